"""``capdist prune``: a baseline pruner at a FLOPs target, fine-tuned with the same losses and
budget as CDD (CVPR 2023) so the two can be compared side by side.

Example:
    >>> prune_run("runs/teacher", None, "fmnist", PruneConfig(method="taylor"), "runs/taylor35")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..data import RetrievalData, fetch
from ..errors import UnreachableTarget
from ..io.atomic import check_out_dir, prepare_out_dir
from ..measure.latency_table import build_latency_table
from ..measure.timing import deployed
from ..models.losses import batch_hard_triplet, smoothed_cross_entropy
from ..models.view import has_logits, inner, like
from ..pruners import prune_to_flops
from .compress import finetune, load_teacher, resolve_data
from .outputs import model_rows, save_result
from .trainer import TrainConfig


@dataclass
class PruneConfig:
    """What ``capdist prune`` does.

    Attributes:
        method: magnitude, l2, taylor, bn_scale, lamp, fpgm, random, or ``none`` (no pruning: the
            unpruned model trained for the same budget, to show what the epochs alone give).
        target_flops: FLOPs of the result as a fraction of the teacher's.
        target_latency: latency of the result as a fraction of the teacher's on the run's device at
            ``latency_batch`` and ``latency_input_size`` (instead of FLOPs; the pruning ratio is
            bisected on a per-layer latency table's prediction).
        latency_batch: images per pass for the latency target.
        latency_table_time: seconds of timing behind each latency-table entry.
        round_to: kept widths are multiples of this.
        global_pruning: rank channels across layers.
        finetune_epochs: epochs of fine-tuning (CE + triplet + KD + extras).
        kd_temperature: KD temperature.
        kd: include KD on logits during fine-tuning.
        distill: extra distillation terms.
        latency_repeats: timed passes behind each latency figure.
        latency_input_size: C, H, W at which the report times the models (default: the training size).
        gallery: ``"own"`` or ``"teacher"`` (fine-tune against the teacher's deployed gallery, as
            :class:`~capdist.engine.compress.CompressConfig` does).
        train: optimizer settings for fine-tuning.
    """

    method: str = "magnitude"
    target_flops: float = 0.35
    target_latency: float | None = None
    latency_batch: int = 1
    latency_table_time: float = 0.02
    round_to: int | None = None
    global_pruning: bool = False
    finetune_epochs: int = 5
    kd_temperature: float = 2.0
    distill: str = ""
    kd: bool = True
    latency_repeats: int = 10
    latency_input_size: tuple[int, int, int] | None = None
    gallery: str = "own"
    train: TrainConfig = field(default_factory=TrainConfig)


def prune_run(teacher_name, weights: str | None, data_spec: str | RetrievalData, config: PruneConfig,
              out: str | Path, train_subset: int | None = None, test_subset: int | None = None,
              overwrite: bool = False, device: str = "cpu", model_args: dict | None = None,
              embedding_output: str | int | None = None, allow_partial: bool = False,
              recipe: dict | None = None) -> dict:
    """Prune a copy of the teacher to the target, fine-tune it, evaluate it and write the run directory.

    ``teacher_name`` is anything :func:`capdist.engine.compress.load_teacher` takes (a user's own
    module included: it is pruned as itself, and fine-tuned without a classifier of its own).

    Raises:
        UnreachableTarget: ``method="none"`` (the unpruned reference) with a latency target.
    """
    if config.method == "none" and config.target_latency is not None:
        raise UnreachableTarget("method 'none' prunes nothing, so it cannot meet a latency target")
    start = time.time()
    out = Path(out)
    data = resolve_data(data_spec, train_subset, test_subset, config.train.seed)
    check_out_dir(out, overwrite=overwrite)
    teacher = load_teacher(teacher_name, weights, data.num_classes, model_args, embedding_output, allow_partial)
    example = torch.stack([data.train[i][0] for i in range(1)])
    images, pids = fetch(data.train, torch.arange(min(64, len(data.train))))

    def loss_fn(net):
        o = like(teacher, net)(images)
        if has_logits(teacher):
            return smoothed_cross_entropy(o["logits"], pids) + batch_hard_triplet(o["feature"], pids)
        return batch_hard_triplet(o["embedding"], pids)

    table = None
    if config.target_latency is not None and config.method != "none":
        size = tuple(config.latency_input_size or data.image_shape)
        table = build_latency_table(deployed(inner(teacher))[0], size, config.latency_batch, device,
                                    min_run_time=config.latency_table_time)
        inner(teacher).to("cpu")
    if config.method == "none":
        pruned, plan, ratio = copy.deepcopy(teacher), None, 0.0
    else:
        cost = (lambda net: table.predict_model(net) / table.full_ms) if table is not None else None
        result = prune_to_flops(inner(teacher), example, config.method, config.target_latency or config.target_flops,
                                config.round_to, config.global_pruning, loss_fn, cost=cost,
                                cost_name="FLOPs" if table is None else "latency")
        pruned, plan, ratio = like(teacher, result.model), result.plan, result.ratio
    prepare_out_dir(out, overwrite=overwrite, recipe=("prune", recipe) if recipe else None)
    entries = [("teacher", teacher)]
    if config.method != "none":
        entries.append((f"{config.method} (pruned)", pruned.eval()))
    final, tuned = pruned, {}
    if config.finetune_epochs:
        final, tuned = finetune(pruned, teacher, data, config.train, config.finetune_epochs,
                                config.kd_temperature, out / "finetune", config.distill, kd=config.kd,
                                device=device, gallery=config.gallery)
        entries.append((f"{config.method} + {config.finetune_epochs} fine-tune epochs", final))
    rows = model_rows(entries, data, device, config.latency_repeats, config.latency_input_size,
                      batches=tuple(sorted({1, 32, config.latency_batch})))
    method = config.method if config.method != "none" else ("unpruned + KD" if config.kd else "unpruned, no KD")
    method += " (teacher gallery)" if config.gallery == "teacher" else ""
    method += f" (latency target {config.target_latency:g})" if table is not None else ""
    extra = {"method": method, "target_flops": None if table is not None else config.target_flops if plan else 1.0,
             "target_latency": config.target_latency if table is not None else None, "ratio": round(ratio, 4),
             "finetune_epochs": config.finetune_epochs, "global_pruning": config.global_pruning,
             "training_seconds": round(time.time() - start, 1), "loss_terms": tuned, "gallery": config.gallery}
    if table is not None:
        measured = rows[-1][f"latency_ratio_b{config.latency_batch}"]
        extra["latency_budget"] = {
            "target": config.target_latency, "batch": config.latency_batch, "device": device,
            "input_size": list(table.key["input_size"]), "predicted": round(cost(result.model), 4),
            "measured": round(measured, 4), "within_5_percent": abs(measured / config.target_latency - 1) <= 0.05,
            "calibration": "none: the pruning ratio is bisected on the table's prediction"}
    settings = {"prune": {k: v for k, v in asdict(config).items() if k != "train"}, "train": asdict(config.train)}
    goal = (f"{config.target_flops:.0%} FLOPs" if table is None else f"{config.target_latency:.0%} of the teacher's "
            "latency")
    save_result(out, final, teacher, data, data.name, plan, settings, rows, extra,
                f"capdist prune: {config.method}, target {goal}")
    import json

    return json.loads((out / "report.json").read_text())
