"""After CDD's training: surgery, optional fine-tuning, evaluation side by side with the teacher,
and the run directory with its report.

Example:
    >>> # report = write_report(cm, student, teacher, data, config, out, "cpu", 120.0, objective, None, None)
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ..compactor import CompactorModel, surgery
from ..data import RetrievalData
from ..engine.outputs import model_rows, save_result
from ..measure.latency_budget import LatencyBudget
from ..measure.report import plot_mask_history
from ..models.view import wrapped_like
from .cdd_objective import CDDObjective
from .finetune import finetune
from .settings import CompressConfig
from .task_loss import nce_suffix


def method_label(config: CompressConfig, round_to: int) -> str:
    """The report's method name: the schedule, then every setting that differs from the defaults
    and changes what the method is."""
    c, d = config, CompressConfig()
    notes = [(c.compactors.scope != "all", c.compactors.scope),
             (c.target.min_ratio != d.target.min_ratio, f"min-ratio {c.target.min_ratio:g}"),
             (c.target.allocation != d.target.allocation, f"{c.target.allocation} allocation"),
             (round_to != 1, f"round-to {round_to}"),
             (c.target.latency is not None, f"latency target {c.target.latency:g}" if c.target.latency else ""),
             (c.compactors.residual_compactor != d.compactors.residual_compactor,
              f"{c.compactors.residual_compactor} residual compactors"),
             (c.compactors.internal_compactor != d.compactors.internal_compactor,
              f"{c.compactors.internal_compactor} internal compactors"),
             (c.distill.feature_loss != d.distill.feature_loss, f"{c.distill.feature_loss} loss"),
             (c.distill.gallery == "teacher", "teacher gallery"),
             (c.schedule.kind == "retrieval" and c.schedule.neighbours != d.schedule.neighbours,
              f"{c.schedule.neighbours}-ranked neighbours")]
    label = f"cdd-{c.schedule.kind}" + nce_suffix(c.distill) + "".join(f" ({text})" for on, text in notes if on)
    return label + (f" + {c.distill.extra}" if c.distill.extra else "")


def _latency_row(config: CompressConfig, budget: LatencyBudget, rows: list[dict], device: str,
                 image_shape: tuple[int, ...]) -> dict:
    measured = rows[-1][f"latency_ratio_b{config.target.latency_batch}"]
    return {"target": config.target.latency, "batch": config.target.latency_batch, "device": device,
            "runtime": rows[-1].get("latency_runtime", "eager"),
            "input_size": list(config.report.latency_input_size or image_shape),
            "predicted": round(budget.fraction(), 4), "measured": round(measured, 4),
            "within_5_percent": abs(measured / config.target.latency - 1) <= 0.05,
            "calibration": budget.calibration, "table": "latency_budget.json"}


def _finetuned(pruned: nn.Module, teacher: nn.Module, data: RetrievalData, config: CompressConfig, out: Path,
               device: str) -> tuple[nn.Module, dict]:
    d = config.distill
    return finetune(pruned, teacher, data, config.train, config.finetune_epochs, out / "finetune",
                    kd_temperature=d.kd_temperature, extras=d.extra, kd=d.kd, device=device, gallery=d.gallery,
                    cross_nce=d.cross_nce, cross_nce_same_label=d.cross_nce_same_label)


def write_report(cm: CompactorModel, student: nn.Module, teacher: nn.Module, data: RetrievalData,
                 config: CompressConfig, out: Path, device: str, train_seconds: float, objective: CDDObjective,
                 schedule_report: dict | None, budget: LatencyBudget | None) -> dict:
    """Surgery, optional fine-tuning, evaluation and the output directory; returns ``report.json``."""
    student.eval()
    real = torch.stack([data.query[i][0] for i in range(min(64, len(data.query)))]).to(device)
    res = surgery(cm, real)
    pruned = wrapped_like(student, res.model)
    entries = [("teacher", teacher), ("student (compactors, before surgery)", student),
               ("compressed (after surgery)", pruned)]
    final, loss_weights = pruned, {**objective.weights(), "penalty": config.compactors.penalty}
    if config.finetune_epochs:
        final, tuned = _finetuned(pruned, teacher, data, config, out, device)
        loss_weights["finetune"] = tuned
        entries.append((f"compressed + {config.finetune_epochs} fine-tune epochs", final))
    if objective.kept_head is not None:
        for model in (final, pruned, None):
            objective.kept_head.release(model)
    batches = tuple(sorted({1, 32, config.target.latency_batch}))
    rows = model_rows(entries, data, device, config.report.latency_repeats, config.report.latency_input_size,
                      batches=batches, timer=config.report.latency_backend,
                      flip=config.report.flip_test, rerank=config.report.rerank)
    extra = {"method": method_label(config, cm.config.round_to),
             "target_flops": config.target.flops if budget is None else None,
             "target_latency": config.target.latency, "round_to": cm.config.round_to,
             "penalty": config.compactors.penalty,
             "masked_penalty": round(cm.config.masked_penalty or config.compactors.penalty, 6),
             "schedule": config.schedule.kind, "scope": config.compactors.scope,
             "epochs": config.train.epochs, "finetune_epochs": config.finetune_epochs,
             "surgery_max_abs_diff": res.max_abs_diff, "surgery_rel_diff": res.rel_diff,
             "masked_rows_drift": res.drift, "training_seconds": round(train_seconds, 1),
             "feature_loss": objective.feature_loss, "distill_blocks": objective.feature_layers,
             "loss_terms": loss_weights, "gallery": config.distill.gallery}
    if budget is not None:
        extra["latency_budget"] = _latency_row(config, budget, rows, device, data.image_shape)
    extra.update(schedule_report or {})
    if "history" in extra.get("rggr", {}):
        plot_mask_history(extra["rggr"], config.target.latency or config.target.flops, out / "mask_schedule.png")
    settings = {"compress": {k: v for k, v in asdict(config).items() if k != "train"}, "train": asdict(config.train)}
    goal = (f"target {config.target.flops:.0%} FLOPs" if budget is None else
            f"target {config.target.latency:.0%} of the teacher's latency")
    save_result(out, final, teacher, data, data.name, res.plan, settings, rows, extra,
                f"capdist compress: {config.schedule.kind} schedule, scope {config.compactors.scope}, {goal}")
    return json.loads((out / "report.json").read_text())
