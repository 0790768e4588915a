"""What a mask schedule spends: FLOPs or any other cost of the widths (latency).

A budget maps kept widths (channels per group, in group order) to the cost of the model
after surgery as a fraction of a reference, and says how much one pruning unit of each
group saves, so a schedule can rank units by importance per unit of cost saved. The FLOPs
budget saves nothing to rank by: ResRep's global norm order is kept unchanged. A latency
budget built from a per-layer latency table lives in :mod:`capdist.measure.latency_budget`.

Example:
    >>> # budget = FlopsBudget(cm); budget.fraction(cm.kept()) == cm.flops() / cm.original_flops
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .model import CompactorModel


class Budget(Protocol):
    """The cost a schedule holds to a target.

    Attributes:
        kind: ``"flops"`` or ``"latency"`` (used in messages and reports).
    """

    kind: str

    def fraction(self, kept: np.ndarray | None = None) -> float:
        """Cost after surgery with ``kept`` channels per group (None: the current masks), as a
        fraction of the reference."""

    def lowest(self) -> float:
        """The cost with every group at its minimum width."""

    def unit_savings(self) -> np.ndarray | None:
        """Cost saved by removing one pruning unit of each group (None: rank by importance alone)."""


class FlopsBudget:
    """FLOPs after surgery as a fraction of the original network's fvcore FLOPs.

    Args:
        cm: the compacted model.
    """

    kind = "flops"

    def __init__(self, cm: CompactorModel) -> None:
        self.cm = cm

    def fraction(self, kept: np.ndarray | None = None) -> float:
        return self.cm.flops(kept) / max(self.cm.original_flops, 1)

    def lowest(self) -> float:
        return self.cm.min_flops() / max(self.cm.original_flops, 1)

    def unit_savings(self) -> np.ndarray | None:
        return None


def ranking_scores(norms: list[np.ndarray], savings: np.ndarray | None, uniform: bool = False) -> list[np.ndarray]:
    """Per-unit scores a schedule walks from the smallest: the norm itself (FLOPs budgets), or the
    norm per unit of cost saved, so a unit that saves much for its importance goes first.

    Savings are scaled by their mean over groups (the order does not depend on the cost's unit);
    a group whose units save nothing measurable is ranked last. With ``uniform``, each unit's score
    is its rank within its group as a fraction of the group's size, so a walk takes the same
    fraction of every group (the cost's savings no longer matter).
    """
    if uniform:
        return [within_group_ranks(n) for n in norms]
    if savings is None:
        return norms
    savings = np.asarray(savings, dtype=np.float64)
    positive = savings[savings > 0]
    if not len(positive):
        return norms
    scale = savings / positive.mean()
    return [n / s if s > 0 else np.full_like(n, np.inf) for n, s in zip(norms, scale, strict=True)]


def within_group_ranks(scores: np.ndarray) -> np.ndarray:
    """``(rank + 1) / len`` of each score in its group (smallest first, ties in index order)."""
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return ranks / max(len(scores), 1)
