"""Configuration of compactor placement.

Example:
    >>> from capdist.compactor import CompactorConfig, Scope
    >>> cfg = CompactorConfig(scope=Scope.ALL, round_to=8)
    >>> cfg.scope.value
    'all'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from torch import nn


class Scope(str, Enum):
    """Which channel groups receive compactors.

    ``INTERNAL`` keeps ResRep/CDD's choice: only channels not tied by a residual
    add. ``ALL`` adds residual-coupled groups, with one shared mask per group.
    """

    INTERNAL = "internal"
    ALL = "all"


ALLOCATIONS = ("global", "uniform")

FilterFn = Callable[[nn.Module, str], bool]


@dataclass
class CompactorConfig:
    """How :func:`capdist.compactor.attach` places compactors.

    Args:
        scope: ``"internal"`` (ResRep/CDD) or ``"all"`` (residual groups too).
        penalty: group-lasso strength lambda (ResRep 1e-4, CDD 4e-3).
        round_to: kept widths are multiples of this (the full width is always allowed).
        min_channels: fewest channels any group keeps (rounded up to ``round_to``).
        min_ratio: fewest channels any group keeps as a fraction of its original width
            (Torch-Pruning's ``1 - max_pruning_ratio``). A global norm ranking otherwise
            empties the deep, wide layers first, where a channel costs few FLOPs but holds
            many parameters.
        filter_fn: ``filter_fn(module, name) -> bool``; a group is compacted only if it
            returns True for every producer layer of the group.
        pinned: module names whose output width must not change (a group that
            contains one of them is left alone). Groups whose channels reach the
            model's output (an embedding, the logits) are always pinned.
        threshold: compactor rows with a norm below this are removed by surgery.
        masked_penalty: lasso strength on *masked* rows only (None: ``penalty``). Masked
            rows feel nothing else, so this sets how fast they reach zero; a short run can
            raise it without pushing on the rows that are kept.
        diagonal_residual: give residual-coupled groups per-channel-scale compactors
            instead of dense ones. A residual stream has one compactor per producer, and
            dense ones on wide streams (resnet50's 2048 channels) double the training
            step; diagonal ones cost an element-wise product.
        diagonal_internal: give the other groups (a convolution's own output channels) per-channel-scale
            compactors too: ResRep's dense maps there add about 12% of a bottleneck's FLOPs to
            every training step.
        allocation: how a schedule's ranking spreads the reduction over groups: ``"global"`` ranks
            every unit of every group together (ResRep), ``"uniform"`` removes the same fraction of
            every group up to ``round_to`` and the floors (Torch-Pruning's local pruning), ranking
            units within each group only (the ranking schedules and the retrieval schedule's top-up;
            RGGR's own masks are per group already).
    """

    scope: Scope | str = Scope.INTERNAL
    penalty: float = 1e-4
    round_to: int = 1
    min_channels: int = 1
    min_ratio: float = 0.0
    filter_fn: FilterFn | None = None
    pinned: tuple[str, ...] = field(default_factory=tuple)
    threshold: float = 1e-5
    diagonal_residual: bool = False
    diagonal_internal: bool = False
    masked_penalty: float | None = None
    allocation: str = "global"

    def __post_init__(self) -> None:
        self.scope = Scope(self.scope)
        if self.penalty < 0:
            raise ValueError(f"penalty must be >= 0, got {self.penalty}")
        if self.round_to < 1 or self.min_channels < 1:
            raise ValueError("round_to and min_channels must be >= 1")
        if not 0.0 <= self.min_ratio <= 1.0:
            raise ValueError(f"min_ratio must be in [0, 1], got {self.min_ratio}")
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got '{self.allocation}'")
        self.pinned = tuple(self.pinned)
