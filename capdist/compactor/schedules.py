"""One protocol for the mask schedules and a table of them by name.

A training loop hands a schedule what it asks for after every optimizer step, tells it when
training is over, and reads what it reports; it never needs to know which schedule it has. A new
schedule is one file plus one row of :data:`SCHEDULES`.

Example:
    >>> # schedule = build_schedule(cm, 0.35, ScheduleConfig(kind="norm"), ScheduleTiming(100, 10, 800))
    >>> # for batch in loader: ...; optimizer.step(); schedule.step(features if schedule.needs_features else None)
    >>> # schedule.complete(); surgery(cm, example)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from ..settings import setting
from .budget import Budget
from .contribution_schedule import ContributionSchedule
from .model import CompactorModel
from .retrieval_schedule import NEIGHBOUR_SEARCHES, RetrievalSchedule
from .schedule import NormSchedule
from .taylor_schedule import TaylorSchedule


@dataclass(frozen=True)
class PooledFeatures:
    """One batch of pooled (B, C) features per group name, the student's and the teacher's."""

    student: dict[str, torch.Tensor]
    teacher: dict[str, torch.Tensor]


class MaskSchedule(Protocol):
    """What every mask schedule offers a training loop.

    Attributes:
        needs_features: whether :meth:`step` needs the batch's pooled features per group.
    """

    needs_features: bool

    def step(self, features: PooledFeatures | None = None) -> bool:
        """After one optimizer step; returns True when the masks were updated."""

    def complete(self) -> None:
        """Training is over: bring the masks to the target."""

    def report(self) -> dict | None:
        """What the schedule did: fields added to the run's report (None: nothing beyond the masks)."""

    def state_dict(self) -> dict:
        """Checkpointed state."""

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""


def schedule_names() -> list[str]:
    """The schedules by name, in table order."""
    return list(SCHEDULES)


@dataclass(slots=True)
class ScheduleConfig:
    """How the masks are chosen and paced."""

    kind: str = setting("retrieval", "Mask schedule: retrieval-guided (CDD's RGGR, capped at the target, "
                        "norm top-up when it falls short), norm-ranked (ResRep), or ResRep's ranking by each "
                        "unit's retrieval contribution averaged over training (contribution), or by each unit's "
                        "first-order Taylor importance averaged over training (taylor).", flag="--schedule",
                        choices=schedule_names)
    warmup: float = setting(0.3, "Epochs before the masks start (chosen on the validation splits, "
                            "docs/benchmarks/val-sweep).", flag="--mask-warmup", low=0)
    until: float = setting(0.4, "Fraction of training by which the masks reach the target (chosen on the "
                           "validation splits; 0: at the first update after the warm-up).", flag="--mask-until",
                           low=0, high=1)
    interval: int | None = setting(None, "Steps between mask updates (default: a tenth of an epoch; the authors' "
                                   "RGGR searches every step).", flag="--mask-interval", low=1)
    ratio: float = setting(0.5, "Fraction of channels counted as low-contribution (retrieval).", flag="--mask-ratio",
                           low=0, high=1, open_low=True, open_high=True)
    neighbours: str = setting("student", "Retrieval schedule's neighbour search: the student feature ranks the "
                              "teacher bank, or the teacher feature ranks a bank holding the batch (the authors' "
                              "code).", flag="--rggr-neighbours", choices=NEIGHBOUR_SEARCHES)
    k: int | None = setting(None, "Neighbours per sample (default: 5 student-ranked, 2 teacher-ranked as the "
                            "authors use).", flag="--rggr-k", low=1)
    bank_size: int = setting(1024, "Teacher features kept per group by the retrieval schedule (the authors "
                             "keep 24,000; 4 bytes x channels each).", flag="--bank-size", low=1)


@dataclass(frozen=True)
class ScheduleTiming:
    """When a schedule acts, in optimizer steps.

    Attributes:
        warmup: steps before the first mask update.
        interval: steps between updates.
        deadline: step by which the target is reached.
    """

    warmup: int
    interval: int
    deadline: int


def _norm(cm: CompactorModel, target: float, config: ScheduleConfig, timing: ScheduleTiming,
          budget: Budget | None) -> MaskSchedule:
    return NormSchedule(cm, target, warmup=timing.warmup, interval=timing.interval, granularity=1,
                        until=timing.deadline, budget=budget)


def _retrieval(cm: CompactorModel, target: float, config: ScheduleConfig, timing: ScheduleTiming,
               budget: Budget | None) -> MaskSchedule:
    k = config.k or (2 if config.neighbours == "teacher" else 5)
    return RetrievalSchedule(cm, target, warmup=timing.warmup, interval=timing.interval, k=k, ratio=config.ratio,
                             bank_size=config.bank_size, deadline=timing.deadline, neighbours=config.neighbours,
                             budget=budget)


Builder = Callable[[CompactorModel, float, ScheduleConfig, ScheduleTiming, "Budget | None"], MaskSchedule]

def _contribution(cm: CompactorModel, target: float, config: ScheduleConfig, timing: ScheduleTiming,
                  budget: Budget | None) -> MaskSchedule:
    return ContributionSchedule(cm, target, warmup=timing.warmup, interval=timing.interval, until=timing.deadline,
                                budget=budget, k=config.k or 5, bank_size=config.bank_size)


def _taylor(cm: CompactorModel, target: float, config: ScheduleConfig, timing: ScheduleTiming,
            budget: Budget | None) -> MaskSchedule:
    return TaylorSchedule(cm, target, warmup=timing.warmup, interval=timing.interval, until=timing.deadline,
                          budget=budget)


SCHEDULES: dict[str, Builder] = {
    "retrieval": _retrieval,
    "norm": _norm,
    "contribution": _contribution,
    "taylor": _taylor,
}


def build_schedule(cm: CompactorModel, target: float, config: ScheduleConfig, timing: ScheduleTiming,
                   budget: Budget | None = None) -> MaskSchedule:
    """The schedule ``config.kind`` names, holding ``cm`` to ``target`` of the budget's reference.

    Raises:
        ValueError: an unknown schedule name.
    """
    if config.kind not in SCHEDULES:
        raise ValueError(f"unknown schedule '{config.kind}' ({', '.join(SCHEDULES)})")
    return SCHEDULES[config.kind](cm, target, config, timing, budget)
