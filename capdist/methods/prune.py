"""Baseline structured pruning (torch-pruning importances) at a FLOPs or latency target, fine-tuned
with the same teacher signals and budget CDD gets, written as the same run directory.

Example:
    >>> report = prune("runs/teacher", "fmnist", PruneConfig.of(method="taylor"), "runs/taylor35")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data import RetrievalData, fetch
from ..engine import TrainConfig
from ..engine.distributed import resolve_device
from ..engine.outputs import model_rows, save_result
from ..errors import UnreachableTarget
from ..io.out_dir import check_out_dir, prepare_out_dir
from ..measure.latency_table import LatencyTable, build_latency_table
from ..measure.timer import check_timer
from ..measure.timing import deployed
from ..models.losses import batch_hard_triplet, smoothed_cross_entropy
from ..models.view import has_logits, unwrapped, wrapped_like
from ..pruners import METHODS, prune_to_flops
from ..settings import Settings, setting
from .common import ModelSource, RunOptions, preflight, resolve_data
from .finetune import finetune
from .settings import DistillConfig, ReportConfig, TargetConfig
from .task_loss import nce_suffix

log = logging.getLogger("capdist")

# settings of the shared sections that pruning does not use (left out of ``capdist prune``)
UNUSED = ("min_ratio", "allocation", "feature_loss", "feature_weight", "epochs", "warmup_epochs")


def method_names() -> list[str]:
    """The pruning importances, and ``none`` (the unpruned model trained for the same budget)."""
    return [*METHODS, "none"]


def _prune_training() -> TrainConfig:
    return TrainConfig(lr=0.01)


@dataclass(slots=True)
class PruneConfig(Settings):
    """Everything ``capdist prune`` does, by section.

    Attributes:
        method: a torch-pruning importance, or ``none``.
        target: what the result must cost (the ratio is searched to land on it).
        global_pruning: rank channels across layers.
        distill: the teacher signals of the fine-tuning.
        train: the optimizer of the fine-tuning (at a tenth of its lr).
        report: how the result is measured.
        finetune_epochs: epochs of fine-tuning.
    """

    method: str = setting("magnitude", "Pruning importance, or 'none' (no pruning: what the epochs alone give).",
                          choices=method_names)
    target: TargetConfig = field(default_factory=TargetConfig)
    global_pruning: bool = setting(False, "Rank channels across layers.")
    distill: DistillConfig = field(default_factory=DistillConfig)
    train: TrainConfig = field(default_factory=_prune_training)
    report: ReportConfig = field(default_factory=ReportConfig)
    finetune_epochs: int = setting(5, "Epochs of fine-tuning (at a tenth of --lr).", low=0)


def _loss_fn(teacher: nn.Module, data: RetrievalData):
    """The loss a gradient-based importance (Taylor) reads: CE + triplet, or triplet alone."""
    images, pids = fetch(data.train, torch.arange(min(64, len(data.train))))

    def loss_fn(net: nn.Module) -> torch.Tensor:
        o = wrapped_like(teacher, net)(images)
        if has_logits(teacher):
            return smoothed_cross_entropy(o["logits"], pids) + batch_hard_triplet(o["feature"], pids)
        return batch_hard_triplet(o["embedding"], pids)

    return loss_fn


def _pruned(teacher: nn.Module, data: RetrievalData, config: PruneConfig, table: LatencyTable | None):
    """The pruned copy, its plan, the ratio and the cost function (None: FLOPs)."""
    if config.method == "none":
        return copy.deepcopy(teacher), None, 0.0, None
    cost = (lambda net: table.predict_model(net) / table.full_ms) if table is not None else None
    example = torch.stack([data.train[i][0] for i in range(1)])
    result = prune_to_flops(unwrapped(teacher), example, config.method, config.target.latency or config.target.flops,
                            config.target.round_to, config.global_pruning, _loss_fn(teacher, data), cost=cost,
                            cost_name="FLOPs" if table is None else "latency")
    return wrapped_like(teacher, result.model), result.plan, result.ratio, (cost, result.model)


def _label(config: PruneConfig, latency: bool) -> str:
    method = config.method if config.method != "none" else ("unpruned + KD" if config.distill.kd else
                                                             "unpruned, no KD")
    method += nce_suffix(config.distill) + (" (teacher gallery)" if config.distill.gallery == "teacher" else "")
    return method + (f" (latency target {config.target.latency:g})" if latency else "")


def _report_extra(config: PruneConfig, plan, ratio: float, seconds: float, tuned: dict, table, predicted,
                  rows: list[dict], device: str) -> dict:
    latency = table is not None
    extra = {"method": _label(config, latency),
             "target_flops": None if latency else config.target.flops if plan else 1.0,
             "target_latency": config.target.latency if latency else None, "ratio": round(ratio, 4),
             "finetune_epochs": config.finetune_epochs, "global_pruning": config.global_pruning,
             "training_seconds": round(seconds, 1), "loss_terms": tuned, "gallery": config.distill.gallery}
    if latency:
        measured = rows[-1][f"latency_ratio_b{config.target.latency_batch}"]
        extra["latency_budget"] = {
            "target": config.target.latency, "batch": config.target.latency_batch, "device": device,
            "runtime": rows[-1].get("latency_runtime", "eager"),
            "input_size": list(table.key["input_size"]), "predicted": round(predicted, 4),
            "measured": round(measured, 4), "within_5_percent": abs(measured / config.target.latency - 1) <= 0.05,
            "calibration": "none: the pruning ratio is bisected on the table's prediction"}
    return extra


def prune(teacher: ModelSource | str | nn.Module, data: str | RetrievalData, config: PruneConfig, out: str | Path,
          run: RunOptions | None = None) -> dict:
    """Prune a copy of the teacher to the target, fine-tune it, evaluate it and write the run directory.

    Raises:
        UnreachableTarget: ``method="none"`` (the unpruned reference) with a latency target.
    """
    run = run or RunOptions()
    if config.method == "none" and config.target.latency is not None:
        raise UnreachableTarget("method 'none' prunes nothing, so it cannot meet a latency target")
    start, out, device = time.time(), Path(out), resolve_device(run.device)
    data = resolve_data(data, run.train_subset, run.test_subset, config.train.seed)
    check_out_dir(out, overwrite=run.overwrite)
    check_timer(config.report.latency_backend, device)
    source = ModelSource.of(teacher)
    teacher = source.open(data.num_classes)
    preflight([teacher], torch.stack([data.train[i][0] for i in range(2)]))
    table = None
    if config.target.latency is not None:
        size = tuple(config.report.latency_input_size or data.image_shape)
        table = build_latency_table(deployed(unwrapped(teacher))[0], size, config.target.latency_batch, device,
                                    min_run_time=config.target.latency_table_time,
                                    timer=config.report.latency_backend)
        unwrapped(teacher).to("cpu")
    pruned, plan, ratio, costed = _pruned(teacher, data, config, table)
    log.info("teacher: %s", source.note)
    prepare_out_dir(out, overwrite=run.overwrite, recipe=("prune", run.recipe) if run.recipe else None)
    entries = [("teacher", teacher)] + ([(f"{config.method} (pruned)", pruned.eval())] if config.method != "none"
                                        else [])
    final, tuned = pruned, {}
    if config.finetune_epochs:
        d = config.distill
        final, tuned = finetune(pruned, teacher, data, config.train, config.finetune_epochs, out / "finetune",
                                kd_temperature=d.kd_temperature, extras=d.extra, kd=d.kd, device=device,
                                gallery=d.gallery, cross_nce=d.cross_nce, cross_nce_same_label=d.cross_nce_same_label)
        entries.append((f"{config.method} + {config.finetune_epochs} fine-tune epochs", final))
    rows = model_rows(entries, data, device, config.report.latency_repeats, config.report.latency_input_size,
                      batches=tuple(sorted({1, 32, config.target.latency_batch})), timer=config.report.latency_backend,
                      flip=config.report.flip_test, rerank=config.report.rerank)
    predicted = costed[0](costed[1]) if table is not None else None
    extra = _report_extra(config, plan, ratio, time.time() - start, tuned, table, predicted, rows, device)
    settings = {"prune": {k: v for k, v in asdict(config).items() if k != "train"}, "train": asdict(config.train)}
    goal = (f"{config.target.flops:.0%} FLOPs" if table is None else
            f"{config.target.latency:.0%} of the teacher's latency")
    save_result(out, final, teacher, data, data.name, plan, settings, rows, extra,
                f"capdist prune: {config.method}, target {goal}")
    return json.loads((out / "report.json").read_text())
