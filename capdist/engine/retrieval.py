"""Retrieval training and evaluation built on the trainer (BoT baseline: CE with label smoothing
on the BNNeck logits + batch-hard triplet on the pooled feature, as CDD, CVPR 2023 trains teachers).

Example:
    >>> result = train_retrieval("resnet18", "digits", TrainConfig(epochs=1), "runs/t")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data import RetrievalData, open_dataset
from ..errors import UnsupportedModel
from ..io.atomic import prepare_out_dir
from ..io.run_dir import save_run
from ..measure.retrieval_metrics import evaluate
from ..models import RetrievalNet, embed
from ..models.losses import batch_hard_triplet, smoothed_cross_entropy
from ..progress import progress
from .distributed import DistContext, init_distributed
from .trainer import TrainConfig, Trainer


def retrieval_objective(smoothing: float = 0.1, margin: float | None = 0.3, triplet_weight: float = 1.0):
    """CE (label smoothing) on logits + batch-hard triplet on the pooled feature."""

    def objective(model: nn.Module, images: torch.Tensor, pids: torch.Tensor, step: int) -> dict:
        out = model(images)
        ce = smoothed_cross_entropy(out["logits"], pids, smoothing)
        tri = batch_hard_triplet(out["feature"], pids, margin)
        return {"loss": ce + triplet_weight * tri, "ce": ce, "triplet": tri}

    return objective


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
                    device: str = "cpu", flip: bool = False, workers: int | None = None) -> dict[str, float]:
    """mAP, R@1/5/10 and mINP; asymmetric when ``gallery_model`` encodes the gallery."""
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
                    same_set=data.leave_one_out)


def train_retrieval(model_name: str, data_spec: str | RetrievalData, config: TrainConfig, out: str | Path,
                    train_subset: int | None = None, embed_dim: int | None = None, resume: bool = False,
                    overwrite: bool = False, device: str = "cpu", weights: str | None = None,
                    skip_bad_images: bool = False, backbone_kwargs: dict | None = None,
                    recipe: dict | None = None) -> dict:
    """Train a retrieval network and write ``model.safetensors``, ``config.json``, ``metrics.jsonl``.

    Args:
        model_name: torchvision name or ``package.module:factory`` of the backbone.
        data_spec: a dataset spec or a :class:`RetrievalData` already opened.
        backbone_kwargs: constructor arguments of the backbone (e.g. ``{"last_stride": 1}``).
        recipe: the command's resolved options, stored as ``config.yaml`` for ``--config``.

    Returns:
        The test metrics (rank 0), also written into ``config.json`` under ``eval``.
    """
    ctx: DistContext = init_distributed(device)
    out = Path(out)
    opened = data_spec if isinstance(data_spec, RetrievalData) else open_dataset(data_spec,
                                                                               skip_bad_images=skip_bad_images)
    data = opened.train_subset(train_subset, seed=config.seed)
    if ctx.is_main:
        prepare_out_dir(out, overwrite=overwrite, resume=resume, recipe=("train", recipe) if recipe else None)
    ctx.barrier()
    torch.manual_seed(config.seed)
    model = RetrievalNet(model_name, data.num_classes, embed_dim=embed_dim, backbone_kwargs=backbone_kwargs)
    if weights:
        from ..io.weights import load_weights

        load_weights(model, weights, prefix="backbone" if not str(weights).endswith("model.safetensors") else "")
    trainer = Trainer(model, retrieval_objective(), data.train, config, out, ctx=ctx)
    trainer.fit(resume=resume)
    result: dict = {}
    if ctx.is_main:
        result = evaluate_models(model, data, device=str(ctx.device), workers=config.workers)
        save_run(out, model, {"model": model.spec, "data": data.name, "train_subset": train_subset,
                              "image_shape": list(data.image_shape), "mean": data.mean, "std": data.std,
                              "train": trainer.config_dict(), "eval": result})
    ctx.barrier()
    return result
