"""A latency target for ``compress``: the budget built once per run and shared by
every rank through the run directory, and its recalibration on the schedule's own widths, kept in
the checkpoint.

Example:
    >>> # budget = latency_budget_for(cm, teacher, example, (3, 224, 224), 1, 0.02, True, out, ctx, False)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from ..compactor.model import CompactorModel
from ..engine.distributed import DistContext
from ..errors import CheckpointError
from ..io.atomic import atomic_write_json
from ..measure.latency_budget import LatencyBudget, build_latency_budget
from ..measure.timer import get_timer

log = logging.getLogger("capdist")

RECALIBRATE_AT = (0.5, 0.9, 1.0)


class LatencyCalibration:
    """The latency budget's calibration as checkpointed state: the savings scale, the points measured
    during training and how many of the recalibration points (:data:`RECALIBRATE_AT`, fractions of the
    reduction asked for) are done, so a resumed run refits exactly as an uninterrupted one."""

    def __init__(self, budget: LatencyBudget, target: float) -> None:
        self.budget = budget
        self.target = target
        self.done = 0

    def after_update(self, example: torch.Tensor, ctx: DistContext) -> None:
        """After a mask update: once the masks have made the next :data:`RECALIBRATE_AT` share of the
        reduction, time the current widths on rank 0 and give every rank the refitted scale."""
        if self.done >= len(RECALIBRATE_AT):
            return
        progress = (1.0 - self.budget.fraction()) / max(1e-9, 1.0 - self.target)
        if progress < RECALIBRATE_AT[self.done] - 1e-6:
            return
        while self.done < len(RECALIBRATE_AT) and progress >= RECALIBRATE_AT[self.done] - 1e-6:
            self.done += 1
        self.budget.scale = ctx.broadcast_float(self.budget.recalibrate(example) if ctx.is_main else 0.0)

    def state_dict(self) -> dict:
        points = self.budget.calibration.get("during_training", [])
        return {"scale": torch.tensor(self.budget.scale, dtype=torch.float64), "done": torch.tensor(self.done),
                "points": torch.tensor([[p["predicted_raw"], p["measured"], p["scale"]] for p in points],
                                       dtype=torch.float64).reshape(-1, 3)}

    def load_state_dict(self, state: dict) -> None:
        self.budget.scale = float(state["scale"])
        self.done = int(state["done"])
        points = state.get("points", torch.zeros(0, 3)).tolist()
        self.budget.calibration["during_training"] = [{"predicted_raw": a, "measured": b, "scale": c}
                                                      for a, b, c in points]


def latency_budget_for(cm: CompactorModel, reference: nn.Module, example: torch.Tensor, size: tuple[int, ...],
                       batch: int, table_time: float, choose_round_to: bool, out: Path, ctx: DistContext,
                       resume: bool, timer: str = "eager") -> LatencyBudget:
    """Build the latency budget on rank 0 (or read the run's own on resume) and share it through
    ``latency_budget.json`` in the run directory, so every rank predicts the same.

    Args:
        cm: the compacted student.
        reference: the teacher as the report times it.
        example: a training batch (surgery's equivalence check).
        size: C, H, W of the deployment input.
        batch: images per pass.
        table_time: seconds behind each table entry.
        choose_round_to: let timing choose ``round_to`` (the user gave none).
        out: the run directory.
        ctx: ranks and device.
        resume: read the run's own budget when it has one.
        timer: the timing back-end, a name in :data:`capdist.measure.TIMERS`.

    Raises:
        CheckpointError: a resumed run names another batch, size or device than its table.
    """
    path = out / "latency_budget.json"
    if not (resume and path.is_file()) and ctx.is_main:
        log.info("measuring the latency table at %s, batch %d, on %s", "x".join(map(str, size)), batch, ctx.device)
        budget = build_latency_budget(cm, reference, example, size, batch, str(ctx.device), min_run_time=table_time,
                                      choose_round_to=choose_round_to, timer=timer)
        atomic_write_json(path, budget.to_dict())
    ctx.barrier()
    saved = json.loads(path.read_text())
    key = saved["table"]["key"]
    if (key["batch"], tuple(key["input_size"]), key["device"]) != (batch, tuple(size), str(ctx.device)):
        raise CheckpointError(f"the run's latency table was measured at batch {key['batch']}, "
                              f"{'x'.join(map(str, key['input_size']))} on {key['device']}; resume with the same "
                              "--latency-batch, --latency-input-size and --device, or start a new run")
    cm.config.round_to = saved.get("calibration", {}).get("round_to", {}).get("chosen", cm.config.round_to)
    budget = LatencyBudget.from_dict(cm, saved)
    budget.timer = get_timer(timer)
    budget.device = str(ctx.device)
    return budget
