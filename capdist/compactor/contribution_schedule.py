"""Mask schedule C: units ranked by their retrieval contribution, accumulated over training.

CDD's RGGR (CVPR 2023, arXiv 2303.09230) masks a channel only when it is among the lowest
contributors to the student-query / teacher-gallery similarity for *every* sample and *every*
neighbour of a batch; at the batch sizes users run that vote is rarely unanimous, and a norm
top-up ends up choosing most masks. This schedule keeps RGGR's measure and drops the vote: each
unit's contribution ``|s_c * g_c|`` (normalised student feature times normalised teacher
neighbour, the k nearest in a FIFO bank of teacher features) is averaged over the batch and its
neighbours, every ``interval`` steps, and kept as an exponential moving average; the masks are then chosen as in
ResRep's schedule (global ranking under the FLOPs or latency target, paced to the deadline,
recomputed at every update), with that average in place of the compactor norm.

Example:
    >>> # sched = ContributionSchedule(cm, 0.35, warmup=100, interval=10, until=800)
    >>> # sched.step(PooledFeatures(student_pooled, teacher_pooled))  # after every optimizer step
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .budget import Budget
from .model import CompactorModel
from .schedule import NormSchedule


def unit_contributions(query: torch.Tensor, bank: torch.Tensor, k: int, period: int) -> torch.Tensor:
    """Mean contribution of each unit to the similarity of each query with its k nearest bank items.

    Args:
        query: (B, C) student features.
        bank: (N, C) teacher features.
        k: neighbours per query.
        period: channels per tile (a unit is ``{u + j * period}``).

    Returns:
        (period,) mean of ``|q_c * g_c|`` over queries and neighbours, summed within each unit.
    """
    q = F.normalize(query.float(), dim=1)
    g = F.normalize(bank.to(query.device).float(), dim=1)
    nbr = (q @ g.T).topk(min(k, len(g)), dim=1).indices
    contrib = (q.unsqueeze(1) * g[nbr]).abs().mean((0, 1))
    return contrib.view(-1, period).sum(0)


class ContributionSchedule(NormSchedule):
    """ResRep's paced global ranking with units scored by their retrieval contribution.

    Args:
        cm: the compacted model.
        target: cost after surgery as a fraction of the budget's reference.
        warmup, interval, until, budget: as :class:`NormSchedule`.
        k: teacher neighbours per sample.
        bank_size: teacher features kept per group (FIFO).
        momentum: weight of the past in the moving average of contributions (one average every
            ``interval`` steps, the batch of that step against the bank).
    """

    needs_features = True

    def __init__(self, cm: CompactorModel, target: float, warmup: int = 0, interval: int = 1,
                 until: int | None = None, budget: Budget | None = None, k: int = 5, bank_size: int = 1024,
                 momentum: float = 0.9) -> None:
        super().__init__(cm, target, warmup=warmup, interval=interval, granularity=1, until=until, budget=budget)
        self.k, self.bank_size, self.momentum = k, bank_size, momentum
        self.banks: dict[str, torch.Tensor] = {}
        self.scores: dict[str, torch.Tensor] = {}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "banks": {n: b.clone() for n, b in self.banks.items()},
                "scores": {n: s.clone() for n, s in self.scores.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.banks = {n: b.clone() for n, b in state["banks"].items()}
        self.scores = {n: s.clone() for n, s in state["scores"].items()}

    @torch.no_grad()
    def step(self, features=None) -> bool:
        """Push the batch's teacher features into the banks; every ``interval`` steps fold the batch's
        contributions into the averages; then count the step as ResRep does."""
        scoring = (self.steps + 1) % self.interval == 0
        for g in self.cm.groups:
            student, teacher = features.student.get(g.name), features.teacher.get(g.name)
            bank = self.banks.get(g.name)
            if scoring and student is not None and bank is not None and len(bank):
                now = unit_contributions(student, bank, self.k, g.spec.period).cpu()
                old = self.scores.get(g.name)
                self.scores[g.name] = now if old is None else self.momentum * old + (1 - self.momentum) * now
            if teacher is not None:
                bank = teacher.detach().float() if bank is None else torch.cat([bank, teacher.detach().float()])
                self.banks[g.name] = bank[-self.bank_size:]
        return super().step()

    def unit_scores(self) -> list[np.ndarray]:
        """The moving average of each unit's retrieval contribution (the norm where none is known yet)."""
        return [self.scores[g.name].numpy() if g.name in self.scores else g.unit_norms().numpy()
                for g in self.cm.groups]

    def report(self) -> dict:
        """How the masks were ranked (all of the target's reduction by retrieval contribution)."""
        return {"mask_ranking": {"by": "retrieval contribution", "k": self.k, "bank_size": self.bank_size,
                                 "groups_scored": len(self.scores), "groups": len(self.cm.groups)}}
