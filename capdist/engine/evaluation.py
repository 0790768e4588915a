"""Evaluation of trained models: encode a dataset, then retrieval metrics, symmetric or against
another model's gallery.

Example:
    >>> # metrics = evaluate_models(model, data)  # mAP, CMC / Recall@K, mINP
"""

from __future__ import annotations

import torch
from torch import nn

from ..data import RetrievalData
from ..errors import UnsupportedModel
from ..measure.retrieval_metrics import evaluate
from ..models import embed
from ..progress import progress


@torch.no_grad()
def encode(model: nn.Module, dataset, batch_size: int = 256, device: str | torch.device = "cpu",
           workers: int | None = None, flip: bool = False) -> torch.Tensor:
    """Embeddings of every item of ``dataset`` in eval mode, through a loader.

    Args:
        model: a RetrievalNet or any module whose output :func:`embed` reads.
        dataset: items ``(image, pid, camid, index)``.
        batch_size: images per forward pass.
        device: where the model runs.
        workers: loader processes (None: the default for this dataset).
        flip: test-time augmentation: the mean of the embeddings of the image and its mirror.
    """
    from ..data import eval_loader

    device = torch.device(device)
    was = model.training
    model.eval().to(device)
    out = []
    loader = eval_loader(dataset, batch_size, workers, pin_memory=device.type == "cuda")
    for images, *_ in progress(loader, "encoding", total=len(loader), unit="batch"):
        images = images.to(device, non_blocking=True)
        emb = embed(model, images).float()
        if flip:
            emb = (emb + embed(model, images.flip(3)).float()) / 2
        out.append(emb.cpu())
    model.train(was)
    return torch.cat(out)


def evaluate_models(query_model: nn.Module, data: RetrievalData, gallery_model: nn.Module | None = None,
                    device: str = "cpu", flip: bool = False, workers: int | None = None,
                    rerank: bool = False) -> dict[str, float]:
    """mAP, R@1/5/10 and mINP; asymmetric when ``gallery_model`` encodes the gallery; with flip
    test-time augmentation and k-reciprocal re-ranking on request."""
    q = encode(query_model, data.query, device=device, workers=workers, flip=flip)
    if gallery_model is None and data.leave_one_out:
        g = q
    else:
        g = encode(gallery_model or query_model, data.gallery, device=device, workers=workers, flip=flip)
    if q.shape[1] != g.shape[1]:
        raise UnsupportedModel(f"the query model's embeddings have {q.shape[1]} dimensions and the gallery "
                               f"model's {g.shape[1]}; asymmetric retrieval needs one embedding space")
    qs, gs = data.query, data.gallery
    return evaluate(q, qs.pids, g, gs.pids, qs.camids, gs.camids, protocol=data.protocol,
                    same_set=data.leave_one_out, rerank=rerank)
