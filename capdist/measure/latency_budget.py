"""A latency budget for the mask schedules, predicted from a per-layer latency table (HALP, NeurIPS 2022).

The compacted model's analytic cost model says which fraction of every layer's input and
output channels the current widths keep; the latency table turns those fractions into
milliseconds on the target device. The budget's reference is the teacher's latency measured
side by side with the unpruned student, so ``--target-latency 0.5`` means half the teacher's
time on this device, batch and input size. Layers timed alone do not add up exactly to a pruned
network (caches, dispatch), and a schedule that searches a measured table favours the entries
that happen to be measured low, so :func:`build_latency_budget` times two uniformly pruned
probes of the student side by side with it, and :meth:`LatencyBudget.recalibrate` times the
schedule's own widths during training; one least-squares factor on the predicted savings fits
every measured point (the schedule's own widths count twice: they are what will be deployed, and
one timing on a shared machine is noisy).

Example:
    >>> # budget = build_latency_budget(cm, teacher, example, (3, 224, 224))
    >>> # NormSchedule(cm, 0.5, budget=budget)
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from ..compactor.model import CompactorModel
from ..compactor.surgery import surgery
from .latency_table import LatencyTable, build_latency_table
from .timer import Timer, get_timer
from .timing import time_side_by_side

log = logging.getLogger("capdist")
PROBES = (0.5, 0.25)
ODD_PROBE = 0.47
FAST_MULTIPLE = 8


class LatencyBudget:
    """Predicted latency after surgery as a fraction of a reference latency.

    Args:
        cm: the compacted model.
        table: the latency table of ``cm``'s network as deployed (BatchNorms folded).
        reference_ms: the latency the target is a fraction of, in the table's milliseconds
            (default: the table's unpruned network).
        scale: factor on the predicted savings (from the probes; 1: the table as measured).
        calibration: what the probes measured (kept in reports).

    Attributes:
        timer: the back-end :meth:`recalibrate` times with (None: the default).
    """

    kind = "latency"

    def __init__(self, cm: CompactorModel, table: LatencyTable, reference_ms: float | None = None,
                 scale: float = 1.0, calibration: dict | None = None) -> None:
        self.timer: Timer | None = None
        self.device = table.key.get("device", "cpu")
        self._plain: nn.Module | None = None
        self.cm = cm
        self.table = table
        self.reference_ms = float(reference_ms or table.full_ms)
        self.scale = float(scale)
        self.calibration = calibration or {}
        position = {n: i for i, n in enumerate(cm.cost.module_names)}
        missing = [n for n in table.names if n not in position]
        if missing:
            raise ValueError(f"the latency table names layers the compacted model does not have: {missing[:3]}")
        self._rows = np.array([position[n] for n in table.names], dtype=int)

    def to_dict(self) -> dict:
        """The table, reference and calibration (JSON), so another process predicts the same."""
        return {"table": self.table.to_dict(), "reference_ms": self.reference_ms, "scale": self.scale,
                "calibration": self.calibration}

    @classmethod
    def from_dict(cls, cm: CompactorModel, data: dict) -> LatencyBudget:
        return cls(cm, LatencyTable.from_dict(data["table"]), data["reference_ms"], data["scale"],
                   data.get("calibration"))

    def raw_milliseconds(self, kept: np.ndarray | None = None) -> float:
        """The table's prediction with ``kept`` channels per group (None: the current masks)."""
        f_in, f_out = self.cm.cost.layer_fractions(self.cm.kept() if kept is None else kept)
        return self.table.predict(f_in[self._rows], f_out[self._rows])

    def milliseconds(self, kept: np.ndarray | None = None) -> float:
        """Predicted latency with ``kept`` channels per group, the savings scaled by the probes."""
        full = self.table.full_ms
        return full - self.scale * (full - self.raw_milliseconds(kept))

    def fraction(self, kept: np.ndarray | None = None) -> float:
        return self.milliseconds(kept) / self.reference_ms

    def lowest(self) -> float:
        minimum = [self.cm.min_units(g) * g.spec.unit_size for g in self.cm.groups]
        return self.fraction(np.array(minimum, dtype=np.float64))

    def recalibrate(self, example: torch.Tensor, rounds: int = 7) -> float:
        """Time the network the current masks give against the unpruned one, side by side, and refit the
        factor on the predicted savings over every measured point (these widths count twice).

        Returns:
            The new scale (kept in ``calibration["during_training"]``).
        """
        size, batch = tuple(self.table.key["input_size"]), int(self.table.key["batch"])
        if self._plain is None:
            self._plain = uniform_probe(self.cm, 1.0, example)[0]
        current = surgery(self.cm, example, tolerance=None).model
        timing = time_side_by_side({"full": self._plain, "now": current}, size, (batch,), rounds=rounds, repeats=3,
                                   device=self.device, reference="full", timer=self.timer)
        measured = timing["now"][f"b{batch}"]["ratio"]
        predicted = self.raw_milliseconds() / self.table.full_ms
        self.calibration.setdefault("during_training", []).append(
            {"predicted_raw": round(predicted, 4), "measured": round(measured, 4)})
        self.scale = fitted_scale(self.calibration)
        self.calibration["during_training"][-1]["scale"] = round(self.scale, 4)
        log.info("latency budget recalibrated on the current widths: table %.3f, measured %.3f of the student; "
                 "savings scaled by %.3f", predicted, measured, self.scale)
        return self.scale

    def unit_savings(self) -> np.ndarray | None:
        """Milliseconds one pruning unit of each group saves at the current widths (averaged over an
        eighth of the group's units, so a grid step does not make it zero)."""
        kept = self.cm.kept()
        now = self.milliseconds(kept)
        savings = np.zeros(len(self.cm.groups))
        for g, group in enumerate(self.cm.groups):
            step = max(1, group.spec.period // 8)
            less = kept.copy()
            less[g] = max(0.0, kept[g] - step * group.spec.unit_size)
            removed = (kept[g] - less[g]) / group.spec.unit_size
            savings[g] = (now - self.milliseconds(less)) / removed if removed else 0.0
        return savings


def fitted_scale(calibration: dict, own_weight: float = 2.0) -> float:
    """The factor on predicted savings that fits every measured point in least squares (probes with
    weight 1, the schedule's own widths with ``own_weight``), kept within [0.5, 2]."""
    points = [(1.0 - p["predicted"], 1.0 - p["measured"], 1.0) for p in calibration.get("probes", {}).values()]
    points += [(1.0 - p["predicted_raw"], 1.0 - p["measured"], own_weight)
               for p in calibration.get("during_training", [])]
    den = sum(w * x * x for x, _, w in points)
    if den <= 1e-12:
        return 1.0
    return min(2.0, max(0.5, sum(w * x * y for x, y, w in points) / den))


def uniform_probe(cm: CompactorModel, fraction: float, example: torch.Tensor,
                  round_to: int | None = None) -> tuple[nn.Module, np.ndarray]:
    """The plain network with every group keeping its first ``fraction`` of units (at an allowed
    width, under ``round_to`` if given), and those widths; ``cm``'s masks and config are left as they were."""
    saved, saved_round_to = cm.masks(), cm.config.round_to
    cm.config.round_to = round_to or saved_round_to
    kept = []
    try:
        for g in cm.groups:
            n = cm.allowed_units(g, math.ceil(fraction * g.spec.period))
            keep = torch.zeros(g.spec.period, dtype=torch.bool)
            keep[:n] = True
            g.set_mask(g.units_to_mask(keep))
            kept.append(n * g.spec.unit_size)
        return surgery(cm, example, tolerance=None).model, np.array(kept, dtype=np.float64)
    finally:
        cm.config.round_to = saved_round_to
        cm.load_masks(saved)


def build_latency_budget(cm: CompactorModel, reference: nn.Module, example: torch.Tensor,
                         input_size: tuple[int, ...], batch_size: int = 1, device: str = "cpu",
                         probes: tuple[float, ...] = PROBES, rounds: int = 5, min_run_time: float = 0.02,
                         cache_dir=True, timer: Timer | str | None = None,
                         choose_round_to: bool = False) -> LatencyBudget:
    """Measure the latency table of ``cm``'s network as surgery will leave it, time the teacher and
    uniformly pruned probes side by side with it, and return the calibrated budget.

    Args:
        cm: the compacted model (masks as they are: the table is taken at full width).
        reference: the model the target is a fraction of (the teacher, as deployed).
        example: a batch at the training size (for surgery's equivalence check).
        input_size: C, H, W of the deployment input.
        batch_size: images per pass.
        device: where to measure.
        probes: kept fractions of the uniform probes (empty: no calibration).
        rounds: interleaved rounds of the side-by-side timing.
        min_run_time: seconds behind each table entry.
        cache_dir: the latency table cache (see :func:`build_latency_table`).
        timer: the timing back-end of the table and of the side-by-side timings, or its name in
            :data:`~capdist.measure.timer.TIMERS` (default: eager).
        choose_round_to: also time a uniform probe at widths of any size against the same probe
            rounded up to multiples of :data:`FAST_MULTIPLE`; when the rounded one, with more
            channels, is not slower, set ``cm.config.round_to`` to that multiple (the widths this
            device runs fast), recorded in ``calibration["round_to"]``.
    """
    timer = get_timer(timer)
    plain = surgery(cm, example, tolerance=None).model
    table = build_latency_table(plain, input_size, batch_size, device, varies=cm.cost.varying_widths(),
                                min_run_time=min_run_time, cache_dir=cache_dir, timer=timer)
    models, widths = {"student": plain, "teacher": reference}, {}
    for f in probes:
        models[f"uniform {f:g}"], widths[f"uniform {f:g}"] = uniform_probe(cm, f, example)
    if choose_round_to:
        for name, r in ((f"any widths {ODD_PROBE:g}", 1),
                        (f"multiples of {FAST_MULTIPLE} {ODD_PROBE:g}", FAST_MULTIPLE)):
            models[name], widths[name] = uniform_probe(cm, ODD_PROBE, example, round_to=r)
    timing = time_side_by_side(models, tuple(input_size), (batch_size,), rounds=rounds, repeats=3, device=device,
                               reference="student", timer=timer)
    ratio = {name: timing[name][f"b{batch_size}"]["ratio"] for name in models}
    budget = LatencyBudget(cm, table, reference_ms=table.full_ms * ratio["teacher"])
    budget.timer, budget._plain = timer, plain
    predicted = {name: budget.raw_milliseconds(w) / table.full_ms for name, w in widths.items()}
    budget.calibration = {"probes": {n: {"predicted": round(predicted[n], 6), "measured": round(ratio[n], 6)}
                                     for n in widths},
                          "student_vs_teacher": round(1.0 / ratio["teacher"], 4)}
    if choose_round_to:
        odd_name, even_name = f"any widths {ODD_PROBE:g}", f"multiples of {FAST_MULTIPLE} {ODD_PROBE:g}"
        odd, even = ratio[odd_name], ratio[even_name]
        differ = not np.array_equal(widths[odd_name], widths[even_name])
        chosen = FAST_MULTIPLE if differ and even <= odd else cm.config.round_to
        budget.calibration["round_to"] = {"chosen": chosen, "any_widths": round(odd, 4),
                                          f"multiples_of_{FAST_MULTIPLE}": round(even, 4)}
        cm.config.round_to = chosen
    budget.scale = fitted_scale(budget.calibration)
    budget.calibration["scale"] = round(budget.scale, 4)
    log.info("latency budget: table %.2f ms for the student, teacher %.2f ms, probes %s, savings scaled by %.3f",
             table.total_ms, budget.reference_ms, ", ".join(f"{n} predicted {predicted[n]:.3f} measured {ratio[n]:.3f}"
                                                             for n in widths), budget.scale)
    return budget
