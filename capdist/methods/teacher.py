"""Training a retrieval teacher (the BoT re-ID baseline: CE with label smoothing on the BNNeck logits
+ batch-hard triplet on the pooled feature).

Example:
    >>> result = train_retrieval("resnet18", "digits", TrainConfig(epochs=1), "runs/t")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data import RetrievalData, open_dataset
from ..engine import DistContext, TrainConfig, Trainer, init_distributed
from ..engine.evaluation import evaluate_models
from ..engine.monitor import BEST_WEIGHTS
from ..io.out_dir import prepare_out_dir
from ..io.run_dir import save_run
from ..models import RetrievalNet
from ..models.losses import batch_hard_triplet, smoothed_cross_entropy


def retrieval_objective(smoothing: float = 0.1, margin: float | None = 0.3, triplet_weight: float = 1.0):
    """CE (label smoothing) on logits + batch-hard triplet on the pooled feature."""

    def objective(model: nn.Module, images: torch.Tensor, pids: torch.Tensor, step: int) -> dict:
        out = model(images)
        ce = smoothed_cross_entropy(out["logits"], pids, smoothing)
        tri = batch_hard_triplet(out["feature"], pids, margin)
        return {"loss": ce + triplet_weight * tri, "ce": ce, "triplet": tri}

    return objective


def train_retrieval(model_name: str, data_spec: str | RetrievalData, config: TrainConfig, out: str | Path,
                    train_subset: int | None = None, embed_dim: int | None = None, resume: bool = False,
                    overwrite: bool = False, device: str = "auto", weights: str | None = None,
                    skip_bad_images: bool = False, backbone_kwargs: dict | None = None,
                    recipe: dict | None = None) -> dict:
    """Train a retrieval network and write ``model.safetensors`` (the last epoch), ``config.json``,
    ``metrics.jsonl``, and with ``config.eval_every`` the best evaluation's weights as
    ``best.safetensors`` (chosen on the query set, as torchreid and fast-reid do).

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
    torch.manual_seed(config.seed)
    model = RetrievalNet(model_name, data.num_classes, embed_dim=embed_dim, backbone_kwargs=backbone_kwargs)
    if weights:
        from ..io.weights import load_weights

        load_weights(model, weights, prefix="backbone" if not str(weights).endswith("model.safetensors") else "")
    if ctx.is_main:
        prepare_out_dir(out, overwrite=overwrite, resume=resume, recipe=("train", recipe) if recipe else None)
    ctx.barrier()
    def evaluator(net):
        return evaluate_models(net, data, device=str(ctx.device), workers=config.workers)

    trainer = Trainer(model, retrieval_objective(), data.train, config, out, ctx=ctx, evaluator=evaluator,
                      keep_best=True)
    trainer.fit(resume=resume)
    result: dict = {}
    if ctx.is_main:
        result = evaluate_models(model, data, device=str(ctx.device), workers=config.workers)
        best = trainer.monitor.best and {**trainer.monitor.best, "weights": BEST_WEIGHTS,
                                         "note": "chosen on the query set"}
        save_run(out, model, {"model": model.spec, "data": data.name, "train_subset": train_subset,
                              "image_shape": list(data.image_shape), "mean": data.mean, "std": data.std,
                              "train": trainer.config_dict(), "eval": result, "best_eval": best or None})
    ctx.barrier()
    return result
