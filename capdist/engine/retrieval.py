"""Retrieval training and evaluation built on the trainer (BoT baseline: CE with label smoothing
on the BNNeck logits + batch-hard triplet on the pooled feature, as CDD, CVPR 2023 trains teachers).

Example:
    >>> result = train_retrieval("resnet18", "digits", TrainConfig(epochs=1), "runs/t")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..benchmarks.retrieval_metrics import evaluate
from ..data import RetrievalData, open_dataset
from ..io.atomic import prepare_out_dir
from ..io.run_dir import save_run
from ..models import RetrievalNet, embed
from ..models.losses import batch_hard_triplet, smoothed_cross_entropy
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
def encode(model: nn.Module, dataset, batch_size: int = 256, device: str = "cpu") -> torch.Tensor:
    """Embeddings of every item of ``dataset`` in eval mode."""
    from .trainer import fetch

    was = model.training
    model.eval().to(device)
    out = []
    for start in range(0, len(dataset), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(dataset)))
        images, _ = fetch(dataset, idx)
        out.append(embed(model, images.to(device)).float().cpu())
    model.train(was)
    return torch.cat(out)


def evaluate_models(query_model: nn.Module, data: RetrievalData, gallery_model: nn.Module | None = None,
                    device: str = "cpu") -> dict[str, float]:
    """mAP, R@1/5/10 and mINP; asymmetric when ``gallery_model`` encodes the gallery."""
    q = encode(query_model, data.query, device=device)
    if gallery_model is None and data.leave_one_out:
        g = q
    else:
        g = encode(gallery_model or query_model, data.gallery, device=device)
    qs, gs = data.query, data.gallery
    return evaluate(q, qs.pids, g, gs.pids, qs.camids, gs.camids, protocol=data.protocol,
                    same_set=data.leave_one_out)


def train_retrieval(model_name: str, data_spec: str, config: TrainConfig, out: str | Path,
                    train_subset: int | None = None, embed_dim: int | None = None, resume: bool = False,
                    overwrite: bool = False, device: str = "cpu", weights: str | None = None,
                    skip_bad_images: bool = False) -> dict:
    """Train a retrieval network and write ``model.safetensors``, ``config.json``, ``metrics.jsonl``.

    Returns:
        The test metrics (rank 0), also written into ``config.json`` under ``eval``.
    """
    ctx: DistContext = init_distributed(device)
    out = Path(out)
    data = open_dataset(data_spec, skip_bad_images=skip_bad_images).train_subset(train_subset, seed=config.seed)
    if ctx.is_main:
        prepare_out_dir(out, overwrite=overwrite, resume=resume)
    ctx.barrier()
    torch.manual_seed(config.seed)
    model = RetrievalNet(model_name, data.num_classes, embed_dim=embed_dim)
    if weights:
        from ..io.weights import load_weights

        load_weights(model, weights, prefix="backbone" if not str(weights).endswith("model.safetensors") else "")
    trainer = Trainer(model, retrieval_objective(), data.train, config, out, ctx=ctx)
    trainer.fit(resume=resume)
    result: dict = {}
    if ctx.is_main:
        result = evaluate_models(model, data, device=str(ctx.device))
        save_run(out, model, {"model": model.spec, "data": data_spec, "train_subset": train_subset,
                              "image_shape": list(data.image_shape), "mean": data.mean, "std": data.std,
                              "train": trainer.config_dict(), "eval": result})
    ctx.barrier()
    return result
