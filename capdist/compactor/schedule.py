"""Mask schedule A: global norm ranking under a FLOPs or latency target (ResRep, ICCV 2021).

After ``warmup`` steps, every ``interval`` steps: rank every pruning unit of every
group by the joint norm of its compactor rows (under a latency budget: by norm per
millisecond a unit saves, HALP, NeurIPS 2022), walk from the smallest and mask
units until the model after surgery meets the target, masking at most
``granularity`` more units than at the previous update, keeping each group at or
above its minimum width and at widths that are multiples of ``round_to``. Masks
are recomputed from scratch each time, so a channel can come back. With the uniform
allocation (``CompactorConfig.allocation``) units are ranked within their group and the
walk takes the same fraction of every group.

Example:
    >>> sched = NormSchedule(cm, target=0.35, warmup=100, interval=20, until=800)  # doctest: +SKIP
    >>> for batch in loader:  # doctest: +SKIP
    ...     ...; cm.reset_gradients(); optimizer.step(); sched.step()
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UnreachableTarget
from .budget import Budget, FlopsBudget, ranking_scores
from .model import CompactorModel

COST_NAMES = {"flops": "FLOPs", "latency": "latency"}


def check_target(cm: CompactorModel, target: float, budget: Budget | None = None) -> None:
    """Raise :class:`UnreachableTarget` when ``target`` (fraction of the budget's reference) is too low."""
    budget = budget or FlopsBudget(cm)
    cost = COST_NAMES.get(budget.kind, budget.kind)
    if not 0 < target <= 1:
        raise UnreachableTarget(f"{cost} target must be a fraction in (0, 1], got {target}")
    lowest = budget.lowest()
    reference = "original" if budget.kind == "flops" else "reference"
    if target < lowest:
        raise UnreachableTarget(
            f"{cost} target {target:.3f} is below the lowest reachable {lowest:.3f} of the "
            f"{reference} with every compacted group at its minimum width; raise the target or lower "
            f"min_ratio/min_channels/round_to" + ("" if cm.config.scope.value == "all" else ", or use scope='all'"))


class NormSchedule:
    """ResRep's norm-ranked mask schedule with a FLOPs (or latency) target.

    Args:
        cm: the compacted model.
        target: cost after surgery as a fraction of the budget's reference (FLOPs: the
            original's fvcore FLOPs).
        warmup: optimizer steps before the first mask update.
        interval: steps between updates.
        granularity: at most this many more units masked per update than before (ResRep's pacing,
            which needs thousands of steps to reach an aggressive target).
        until: step by which the target is reached: the masked count may also grow linearly from
            the warm-up to this step, so a short loop of a user's own reaches its target
            (``None``: granularity alone paces the masks).
        budget: what the target limits (default: :class:`FlopsBudget`; a
            :class:`capdist.measure.latency_budget.LatencyBudget` for a latency target).
    """

    def __init__(self, cm: CompactorModel, target: float, warmup: int = 0, interval: int = 1,
                 granularity: int = 4, until: int | None = None, budget: Budget | None = None) -> None:
        self.budget = budget or FlopsBudget(cm)
        check_target(cm, target, self.budget)
        if until is not None and until < warmup:
            raise ValueError(f"until ({until}) must not come before the warm-up ends ({warmup})")
        self.cm = cm
        self.target = target
        self.warmup = warmup
        self.interval = max(1, interval)
        self.granularity = granularity
        self.until = until
        self.steps = 0
        self.masked_units = 0

    def state_dict(self) -> dict:
        return {"steps": self.steps, "masked_units": self.masked_units}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.masked_units = int(state["masked_units"])

    needs_features = False

    def step(self, features=None) -> bool:
        """Count one optimizer step; update masks when due. Returns True if it updated."""
        self.steps += 1
        at_deadline = self.until is not None and self.steps >= self.until and not self.reached()
        if not at_deadline and (self.steps < self.warmup or (self.steps - self.warmup) % self.interval):
            return False
        self.update()
        return True

    def complete(self) -> None:
        """Training is over: reach the target now if the steps ran out first."""
        if not self.reached():
            self.update(limit=10**9)

    def report(self) -> dict | None:
        """Nothing beyond the masks."""
        return None

    def check_reached(self, strict: bool = False) -> bool:
        """Say whether the masks reached the target; warn (or raise with ``strict``) when not.

        Call it before :func:`surgery`: a schedule that ran out of steps returns a model above the
        requested FLOPs otherwise without a word.

        Raises:
            UnreachableTarget: with ``strict``, when the target was not reached.
        """
        if self.reached():
            return True
        got = self.budget.fraction()
        cost = COST_NAMES.get(self.budget.kind, self.budget.kind)
        msg = (f"the mask schedule reached {got:.3f} of the {cost}, not the target {self.target:.3f}, after "
               f"{self.steps} steps; give it more steps or pass until=STEP so the masks reach it in time")
        if strict:
            raise UnreachableTarget(msg)
        import warnings

        warnings.warn(msg, UserWarning, stacklevel=2)
        return False

    def reached(self) -> bool:
        """Whether the current masks meet the target."""
        return self.budget.fraction() <= self.target * (1 + 1e-9)

    def _rounded(self, counts: np.ndarray, minimum: np.ndarray) -> np.ndarray:
        """Kept units per group rounded up to the nearest allowed width."""
        return np.array([self.cm.allowed_units(g, c, int(m))
                         for g, c, m in zip(self.cm.groups, counts, minimum, strict=True)])

    def unit_scores(self) -> list[np.ndarray]:
        """How much each unit of each group is worth keeping (ResRep: the joint norm of its rows)."""
        return [g.unit_norms().numpy() for g in self.cm.groups]

    @torch.no_grad()
    def update(self, limit: int | None = None) -> None:
        """Recompute every mask from the current :meth:`unit_scores` (compactor norms).

        Args:
            limit: most units to mask (default: last count + granularity).
        """
        cm = self.cm
        groups = cm.groups
        periods = np.array([g.spec.period for g in groups])
        sizes = np.array([g.spec.unit_size for g in groups], dtype=np.float64)
        minimum = np.array([cm.min_units(g) for g in groups])
        norms = self.unit_scores()
        owner = np.concatenate([np.full(len(n), i) for i, n in enumerate(norms)])
        flat = np.concatenate(ranking_scores(norms, self.budget.unit_savings(), cm.config.allocation == "uniform"))
        order = np.argsort(flat, kind="stable")
        removable = periods - minimum
        walk = []
        taken = np.zeros(len(groups), dtype=int)
        for u in order:
            gi = owner[u]
            if taken[gi] < removable[gi]:
                taken[gi] += 1
                walk.append(gi)
        walk_arr = np.array(walk, dtype=int)
        budget = self.target * (1 + 1e-9)

        def cost_after(n: int) -> float:
            removed = np.bincount(walk_arr[:n], minlength=len(groups))
            kept_units = self._rounded(periods - removed, minimum)
            return self.budget.fraction(kept_units * sizes)

        lo, hi = 0, len(walk_arr)
        if cost_after(hi) > budget:
            lo = hi
        while lo < hi:
            mid = (lo + hi) // 2
            if cost_after(mid) <= budget:
                hi = mid
            else:
                lo = mid + 1
        cap = self.masked_units + self.granularity if limit is None else limit
        if limit is None and self.until is not None:
            span = max(1, self.until - self.warmup)
            cap = max(cap, int(np.ceil(lo * min(1.0, (self.steps - self.warmup) / span))))
        count = min(lo, cap)
        self.masked_units = count
        removed = np.bincount(walk_arr[:count], minlength=len(groups))
        kept_units = self._rounded(periods - removed, minimum)
        for g, n_keep, unit_norms in zip(groups, kept_units, norms, strict=True):
            keep = torch.zeros(g.spec.period, dtype=torch.bool)
            keep[torch.from_numpy(np.argsort(-unit_norms, kind="stable")[: int(n_keep)])] = True
            g.set_mask(g.units_to_mask(keep))
