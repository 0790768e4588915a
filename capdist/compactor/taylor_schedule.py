"""Mask schedule T: units ranked by their first-order Taylor importance, accumulated over training.

Molchanov et al. (CVPR 2019, "Importance Estimation for Neural Network Pruning") estimate what
removing a channel costs the loss by the first-order term ``(w . dL/dw)^2`` summed over the
parameters that produce it, averaged over mini-batches. Here the parameters are the channel's
compactor rows: a compactor row ``Q_j`` produces channel ``j`` alone, so ``Q_j . dL_task/dQ_j``
is exactly ``sum(a_j * dL/da_j)`` over the batch's activations of that channel. Each time gradient
resetting runs (before every optimizer step that is taken: a step a gradient scaler skips adds
nothing), each row's term is read from the reset gradient and the weights the step will update (the
lasso part resetting added is taken out again, so only the task loss scores), squared per unit and
kept as an exponential moving average; the masks are then chosen as in ResRep's schedule (global
ranking under the FLOPs or latency target, paced to the deadline, recomputed at every update) with
that average in place of the compactor norm. A masked unit's average is zero, so it stays masked;
a group not scored yet ranks last.

Example:
    >>> # sched = TaylorSchedule(cm, 0.35, warmup=100, interval=10, until=800)  # reads cm's gradients
    >>> # ...; cm.reset_gradients(); optimizer.step(); sched.step()
"""

from __future__ import annotations

import numpy as np
import torch

from .budget import Budget
from .model import ChannelGroup, CompactorModel
from .schedule import NormSchedule


def task_taylor_terms(group: ChannelGroup, lam: float) -> torch.Tensor | None:
    """Per-unit first-order term ``sum_rows Q_j . dL_task/dQ_j`` of one group, from the gradients in place.

    Gradient resetting leaves ``m_j * dL_task/dQ_j + lam * Q_j / ||Q_j||`` on every row (the norm
    joint over the group's compactors); the lasso part contributes ``lam * ||Q_j||`` to the dot
    product, which is subtracted. Masked rows get zero.

    Args:
        group: a compacted channel group.
        lam: the penalty strength gradient resetting used for kept rows.

    Returns:
        (period,) float tensor on the compactors' device, or None when a compactor has no gradient.
    """
    dots = None
    for c in group.compactors:
        if c.weight.grad is None:
            return None
        d = (c.weight.detach() * c.weight.grad).flatten(1).sum(1).float()
        dots = d if dots is None else dots + d
    joint_norm = sum(c.row_sq_norms().float() for c in group.compactors).sqrt()
    rows = (dots - lam * joint_norm) * group.mask.float()
    return rows.view(group.spec.unit_size, group.spec.period).sum(0)


class TaylorSchedule(NormSchedule):
    """ResRep's paced global ranking with units scored by first-order Taylor importance.

    Args:
        cm: the compacted model.
        target: cost after surgery as a fraction of the budget's reference.
        warmup, interval, until, budget: as :class:`NormSchedule`.
        momentum: weight of the past in the per-step moving average of the squared terms.
    """

    needs_features = False

    def __init__(self, cm: CompactorModel, target: float, warmup: int = 0, interval: int = 1,
                 until: int | None = None, budget: Budget | None = None, momentum: float = 0.9) -> None:
        super().__init__(cm, target, warmup=warmup, interval=interval, granularity=1, until=until, budget=budget)
        self.momentum = momentum
        self.scores: dict[str, torch.Tensor] = {}
        cm.gradient_readers.append(self.read_gradients)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "scores": {n: s.detach().cpu().clone() for n, s in self.scores.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.scores = {n: s.clone() for n, s in state["scores"].items()}

    @torch.no_grad()
    def read_gradients(self) -> None:
        """Fold this step's squared Taylor terms into the averages (called by gradient resetting); a
        unit whose term is not finite this step keeps its average, a masked unit's becomes zero."""
        lam = self.cm.config.penalty
        for g in self.cm.groups:
            terms = task_taylor_terms(g, lam)
            if terms is None:
                continue
            now = terms.pow(2)
            old = self.scores.get(g.name)
            old = torch.zeros_like(now) if old is None else old.to(now.device)
            mixed = (self.momentum * old + (1 - self.momentum) * now) if g.name in self.scores else now
            kept = g.mask.view(g.spec.unit_size, g.spec.period)[0].to(now.dtype)
            self.scores[g.name] = torch.where(torch.isfinite(mixed), mixed * kept, old)

    def unit_scores(self) -> list[np.ndarray]:
        """The moving average of each unit's squared Taylor term (a group not scored yet: ranked last)."""
        return [self.scores[g.name].float().cpu().numpy() if g.name in self.scores
                else np.full(g.spec.period, np.inf) for g in self.cm.groups]

    def report(self) -> dict:
        """How the masks were ranked (all of the target's reduction by Taylor importance)."""
        return {"mask_ranking": {"by": "first-order Taylor importance", "momentum": self.momentum,
                                 "groups_scored": len(self.scores), "groups": len(self.cm.groups)}}
