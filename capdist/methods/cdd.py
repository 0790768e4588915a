"""Capacity Dynamic Distillation end to end (CDD, CVPR 2023, arXiv 2303.09230).

A heavy student (a copy of the teacher by default) gets compactors; it is trained with
:class:`~capdist.methods.cdd_objective.CDDObjective` while gradient resetting lets the channels
the mask schedule picks die; surgery then removes them. The result is evaluated against the
teacher, symmetric and asymmetric, and written as a run directory that ``capdist.load`` rebuilds
without pickle.

Example:
    >>> cfg = CompressConfig.of(target_flops=0.35)
    >>> report = compress("runs/teacher", "fmnist", cfg, "runs/c")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path

import torch
from torch import nn

from ..compactor import CompactorModel, ScheduleTiming, attach, build_schedule
from ..data import IdentityBatchSampler, RetrievalData
from ..distill import Teacher
from ..engine import DistContext, Trainer, init_distributed
from ..engine.evaluation import evaluate_models
from ..errors import UnreachableTarget
from ..io.export import EmbeddingOnly
from ..io.out_dir import check_out_dir, prepare_out_dir, removed_on_failure
from ..measure.timer import check_timer
from ..models.view import unwrapped
from .cdd_objective import CDDObjective
from .cdd_report import write_report
from .common import ModelSource, RunOptions, preflight, resolve_data
from .latency_target import LatencyCalibration, latency_budget_for
from .settings import CompressConfig

__all__ = ["CompressConfig", "compress"]

log = logging.getLogger("capdist")


def schedule_timing(config: CompressConfig, steps_per_epoch: int) -> ScheduleTiming:
    """The schedule's warm-up, interval and deadline in steps.

    Raises:
        UnreachableTarget: a warm-up as long as training.
    """
    total = steps_per_epoch * config.train.epochs
    warmup = int(config.schedule.warmup * steps_per_epoch)
    if warmup >= total:
        raise UnreachableTarget(f"the mask warm-up ({warmup} steps) is not shorter than training ({total} steps): "
                                "the masks would never be trained; lower --mask-warmup or raise --epochs")
    interval = config.schedule.interval or max(1, steps_per_epoch // 10)
    wanted = int(config.schedule.until * total)
    if warmup > wanted and config.schedule.until > 0:
        log.warning(
            "the masks start after %d steps of warm-up but were to reach the target by step %d; they reach it at "
            "the first update after the warm-up instead", warmup, wanted)
    return ScheduleTiming(warmup, interval, max(wanted, warmup))


def masked_penalty_for(trainer: Trainer, deadline: int, config: CompressConfig, reach: float = 1.5) -> float:
    """Lasso on masked rows large enough that a row of norm ``reach`` masked at ``deadline`` reaches
    zero by the end (never below the penalty): with SGD momentum m a constant gradient g moves a row
    by about lr * g / (1 - m) per step. Rows that get there early are pinned at zero
    (:meth:`CompactorModel.settle_masked`), so erring on the large side costs nothing."""
    travel = sum(trainer.lr_factor(t) for t in range(deadline, trainer.total_steps)) * config.train.lr
    travel /= 1.0 - config.compactors.momentum
    return max(config.compactors.penalty, reach / max(travel, 1e-12))


def _attach(student: nn.Module, example: torch.Tensor, config: CompressConfig) -> CompactorModel:
    placement = config.compactors.placement(config.target.round_to or 1, config.target.min_ratio,
                                            config.target.allocation)
    return attach(unwrapped(student).train(), example, placement)


def _trainer(student: nn.Module, cm: CompactorModel, objective: CDDObjective, data: RetrievalData,
             config: CompressConfig, out: Path, ctx: DistContext, stateful: dict, after_step) -> Trainer:
    t = config.train
    groups = cm.param_groups(lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                             compactor_momentum=config.compactors.momentum)
    known = {id(p) for g in groups for p in g["params"]}
    head = [p for p in objective.parameters() if id(p) not in known]
    if head:
        groups.append({"params": head})
    return Trainer(student, objective, data.train, t, out, param_groups=groups, ctx=ctx,
                   stateful={"task": objective.task, **stateful}, after_step=after_step,
                   evaluator=lambda net: evaluate_models(net, data, device=str(ctx.device), workers=t.workers),
                   loader=data.train_loader, extra_log=_flops_kept(cm))


def _flops_kept(cm: CompactorModel):
    """The FLOPs the current masks keep, as a fraction of the unmasked student's, for the training log."""
    full = cm.flops()
    return lambda: {"flops_kept": round(cm.flops() / full, 4)}


def _opened(teacher: ModelSource, student: ModelSource | None, num_classes: int,
            example: torch.Tensor) -> tuple[nn.Module, nn.Module]:
    """The teacher and the heavy student (a copy of the teacher by default), checked by the pre-flight
    forwards before anything is written."""
    teacher_model = teacher.open(num_classes).to(example.device)
    heavy = student.open(num_classes).to(example.device) if student else None
    preflight([teacher_model, heavy] if heavy is not None else [teacher_model], example)
    return teacher_model, heavy if heavy is not None else copy.deepcopy(teacher_model)


def compress(teacher: ModelSource | str | nn.Module, data: str | RetrievalData, config: CompressConfig,
             out: str | Path, run: RunOptions | None = None, student: ModelSource | str | nn.Module | None = None
             ) -> dict:
    """Run CDD and write the compressed model and its report into ``out``; returns the report."""
    run = run or RunOptions()
    start = time.time()
    ctx = init_distributed(run.device)
    out = check_out_dir(out, overwrite=run.overwrite, resume=run.resume)
    check_timer(config.report.latency_backend, ctx.device)
    data = resolve_data(data, run.train_subset, run.test_subset, config.train.seed)
    teacher, student = ModelSource.of(teacher), student and ModelSource.of(student)
    example = torch.stack([data.train[i][0] for i in range(2)]).to(ctx.device)
    teacher_model, student_model = _opened(teacher, student, data.num_classes, example)
    t = config.train
    steps_per_epoch = len(data.train_loader or IdentityBatchSampler(data.train.pids, t.batch_size, t.seed,
                                                                     t.instances))
    timing = schedule_timing(config, steps_per_epoch)
    with removed_on_failure(out):
        if ctx.is_main:
            prepare_out_dir(out, overwrite=run.overwrite, resume=run.resume,
                            recipe=("compress", run.recipe) if run.recipe else None)
        ctx.barrier()
        cm = _attach(student_model, example, config)
        student_model.train()
        frozen = Teacher(teacher_model)
        objective = CDDObjective(student_model, frozen, cm, example, data.num_classes, config.distill,
                                 seed=t.seed, same_architecture=student is None).to(ctx.device)
        budget = None if config.target.latency is None else latency_budget_for(
            cm, EmbeddingOnly(teacher_model), example, tuple(config.report.latency_input_size or data.image_shape),
            config.target.latency_batch, config.target.latency_table_time, config.target.round_to is None, out, ctx,
            run.resume, config.report.latency_backend)
        target = config.target.flops if budget is None else config.target.latency
        schedule = build_schedule(cm, target, config.schedule, timing, budget)
        if schedule.needs_features:
            objective.capture_groups(student_model, frozen, cm)
        log.info("teacher: %s", teacher.note)
        calibration = LatencyCalibration(budget, target) if budget is not None else None

        def after_step(step: int) -> None:
            updated = schedule.step(objective.pooled_features() if schedule.needs_features else None)
            if calibration is not None and updated:
                calibration.after_update(example, ctx)

        stateful = {"schedule": schedule, **({"latency_budget": calibration} if calibration is not None else {})}
        trainer = _trainer(student_model, cm, objective, data, config, out, ctx, stateful, after_step)
        # identity-initialised compactors: a group of n compactors starts with joint row norms sqrt(n)
        reach = 2.0 * max((math.sqrt(len(g.compactors)) for g in cm.groups), default=1.0)
        cm.config.masked_penalty = masked_penalty_for(trainer, timing.deadline, config, reach)
        cm.register_step_hook(trainer.optimizer)
    trainer.fit(resume=run.resume)
    train_seconds = time.time() - start
    schedule.complete()
    objective.remove()
    report: dict = {}
    if ctx.is_main:
        report = write_report(cm, student_model, teacher_model, data, config, out, str(ctx.device), train_seconds,
                              objective, schedule.report(), budget)
    ctx.barrier()
    return report
