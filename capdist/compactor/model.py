"""A network with compactors attached: masks, penalty, gradient resetting, cost (ResRep, ICCV 2021).

:class:`CompactorModel` is what :func:`capdist.compactor.attach` returns. It does
not wrap the network: ``cm.model`` is the user's own module, with compactors
registered as children of the layers they follow, so any training loop, DDP
wrapper or checkpoint code keeps working.

Example:
    >>> import torch, torchvision
    >>> from capdist.compactor import CompactorConfig, attach
    >>> net = torchvision.models.resnet18(num_classes=10)
    >>> cm = attach(net, torch.randn(1, 3, 32, 32), CompactorConfig())
    >>> loss = net(torch.randn(2, 3, 32, 32)).sum() + cm.penalty()
    >>> loss.backward(); cm.reset_gradients()
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .config import CompactorConfig
from .cost import CostModel
from .graph import GroupSpec


@dataclass
class ChannelGroup:
    """Channels pruned together, with one compactor per producer and one shared mask.

    Attributes:
        spec: what tracing found (producers, anchors, period).
        compactors: the compactor modules, one per producer.
        index: position in ``CompactorModel.groups``.
    """

    spec: GroupSpec
    compactors: list[nn.Module] = field(default_factory=list)
    index: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def channels(self) -> int:
        return self.spec.channels

    @property
    def mask(self) -> torch.Tensor:
        """BoolTensor of length C, True = kept (shared by every compactor of the group)."""
        return self.compactors[0].mask

    def set_mask(self, kept: torch.Tensor) -> None:
        """Write ``kept`` (bool, length C) into every compactor's mask buffer."""
        kept = torch.as_tensor(kept, dtype=torch.bool)
        if kept.numel() != self.channels:
            raise ValueError(f"mask for group {self.name} needs {self.channels} entries")
        tiles = kept.reshape(self.spec.unit_size, self.spec.period)
        if self.spec.unit_size > 1 and not bool((tiles == tiles[0]).all()):
            raise ValueError(f"mask for group {self.name} splits a pruning unit: its {self.spec.unit_size} conv groups "
                             f"must keep the same channels (channel c and c + {self.spec.period} together); build it "
                             "with units_to_mask")
        for c in self.compactors:
            c.mask.copy_(kept.to(c.mask.device))

    def row_norms(self) -> torch.Tensor:
        """Joint L2 norm of every row across the group's compactors."""
        with torch.no_grad():
            sq = sum(c.row_sq_norms().float().cpu() for c in self.compactors)
        return sq.sqrt()

    def unit_norms(self) -> torch.Tensor:
        """Joint norm of every pruning unit (a channel, or one channel per tile)."""
        sq = self.row_norms().pow(2).view(self.spec.unit_size, self.spec.period).sum(0)
        return sq.sqrt()

    def kept_units(self) -> torch.Tensor:
        """Which pruning units the mask keeps (bool, length ``period``), on the CPU where the
        schedules and surgery decide, whatever device the compactors are on."""
        return self.mask.view(self.spec.unit_size, self.spec.period)[0].detach().cpu().clone()

    def units_to_mask(self, kept_units: torch.Tensor) -> torch.Tensor:
        """Expand a per-unit keep vector to a per-channel one."""
        return kept_units.repeat(self.spec.unit_size)


class CompactorModel:
    """The user's network with compactors, plus everything needed to train and cut them.

    Args:
        model: the network; compactors are already installed on it.
        config: the configuration used to attach.
        groups: the compacted channel groups.
        skipped: groups left alone, each with the reason.
        cost: analytic FLOPs/params of the model after surgery.
        example_inputs: inputs used to trace (kept for surgery and reports).
    """

    def __init__(self, model: nn.Module, config: CompactorConfig, groups: list[ChannelGroup],
                 skipped: list[tuple[GroupSpec, str]], cost: CostModel, example_inputs) -> None:
        self.model = model
        self.config = config
        self.groups = groups
        self.skipped = skipped
        self.cost = cost
        self.example_inputs = example_inputs
        self._penalty_in_graph = False
        self._masked_index_cache: dict[int, tuple] = {}
        self.gradient_readers: list[Callable[[], None]] = []

    # ----------------------------------------------------------------- parameters
    def compactors(self) -> list[nn.Module]:
        """Every compactor module, group by group."""
        return [c for g in self.groups for c in g.compactors]

    def compactor_parameters(self) -> list[nn.Parameter]:
        """The compactor weights (train them with momentum 0.99 and no weight decay)."""
        return [c.weight for c in self.compactors()]

    def param_groups(self, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4,
                     compactor_momentum: float = 0.99) -> list[dict]:
        """Optimizer parameter groups: the network's own, and the compactors'.

        The compactor group uses momentum 0.99 and no weight decay (ResRep).

        Example:
            >>> opt = torch.optim.SGD(cm.param_groups(lr=0.01), lr=0.01)  # doctest: +SKIP
        """
        own = {id(p) for p in self.compactor_parameters()}
        rest = [p for p in self.model.parameters() if id(p) not in own and p.requires_grad]
        return [
            {"params": rest, "lr": lr, "momentum": momentum, "weight_decay": weight_decay},
            {"params": self.compactor_parameters(), "lr": lr, "momentum": compactor_momentum,
             "weight_decay": 0.0, "capdist": "compactor"},
        ]

    # ------------------------------------------------------- penalty and resetting
    def penalty(self) -> torch.Tensor:
        """Group lasso ``lambda * sum_j ||Q_j||`` (joint norm over a coupled group).

        Adding it to the loss is optional: :meth:`reset_gradients` produces the
        same gradient either way. It learns which by a hook on the returned tensor that
        fires only when a backward pass goes through it, so computing the penalty just to log
        it changes nothing.
        """
        lam = self.config.penalty
        terms = []
        for g in self.groups:
            sq = sum(c.row_sq_norms() for c in g.compactors)
            terms.append(sq.clamp_min(1e-24).sqrt().sum())
        if not terms:
            return torch.zeros(())
        total = lam * torch.stack([t.to(terms[0].device) for t in terms]).sum()
        if total.requires_grad:
            total.register_hook(self._penalty_backpropagated)
        return total

    def _penalty_backpropagated(self, grad: torch.Tensor) -> torch.Tensor:
        self._penalty_in_graph = True
        return grad

    @torch.no_grad()
    def reset_gradients(self, penalty_in_loss: bool | None = None) -> None:
        """Gradient resetting: ``grad(Q_j) <- m_j * dL_task/dQ_j + lambda * Q_j / ||Q_j||``.

        Call after backward (after DDP's all-reduce) and before ``optimizer.step``.
        Works whether or not :meth:`penalty` was part of the loss. Masked rows use
        ``config.masked_penalty`` when it is set. Then calls every function in
        ``gradient_readers`` (a schedule that scores units by their gradients), which sees the
        reset gradients and the weights the coming step will update; a step an optimizer skips
        (a gradient scaler's overflow) never reaches them.

        Args:
            penalty_in_loss: whether the last backward pass went through :meth:`penalty`
                (None: as observed by the penalty's hook since the previous call).
        """
        lam = self.config.penalty
        lam_masked = lam if self.config.masked_penalty is None else self.config.masked_penalty
        in_graph = self._penalty_in_graph if penalty_in_loss is None else penalty_in_loss
        self._penalty_in_graph = False
        for g in self.groups:
            sq = sum(c.row_sq_norms() for c in g.compactors)
            norm = sq.clamp_min(1e-24).sqrt()
            for c in g.compactors:
                w = c.weight.view(c.weight.shape[0], -1)
                direction = w / norm.to(w.dtype).view(-1, 1)
                grad = c.weight.grad
                if grad is None:
                    grad = torch.zeros_like(c.weight)
                    c.weight.grad = grad
                grad = grad.view_as(w)
                keep = c.mask.to(w.dtype).view(-1, 1)
                grad.mul_(keep).add_(direction * (1.0 - keep) * lam_masked)
                if not in_graph:
                    grad.add_(direction * keep * lam)
        for read in self.gradient_readers:
            read()

    def _masked_index(self, compactor: nn.Module) -> torch.Tensor:
        """Indices of a compactor's masked rows, recomputed only when its mask buffer changes
        (so the training step does no device sync for it)."""
        key = (id(compactor.mask), compactor.mask._version)
        hit = self._masked_index_cache.get(id(compactor))
        if hit is None or hit[0] != key:
            hit = (key, torch.nonzero(~compactor.mask).flatten())
            self._masked_index_cache[id(compactor)] = hit
        return hit[1]

    @torch.no_grad()
    def masked_rows(self) -> dict[int, list[torch.Tensor]]:
        """Copies of the masked rows of every compactor (group index -> one tensor per compactor),
        for :meth:`settle_masked`."""
        snap = {}
        for gi, g in enumerate(self.groups):
            index = [self._masked_index(c) for c in g.compactors]
            if any(len(i) for i in index):
                snap[gi] = [c.weight.view(c.weight.shape[0], -1).index_select(0, i)
                            for c, i in zip(g.compactors, index, strict=True)]
        return snap

    @torch.no_grad()
    def settle_masked(self, before: dict[int, list[torch.Tensor]],
                      optimizer: torch.optim.Optimizer | None = None) -> torch.Tensor:
        """Pin at zero every masked row that crossed zero in the last step; returns how many
        (a 0-dim tensor, so the training step does not wait for the device).

        The lasso subgradient has constant length, so with a fixed step a masked row
        reaches zero and then oscillates around it, with momentum amplifying the swing,
        and surgery then removes rows that still carried signal. A row whose direction
        flipped (``<before, after> <= 0``), in any compactor of its group, is set to zero
        there and its momentum buffer cleared; at zero both its task gradient (masked)
        and its lasso direction vanish, so it stays there. Call right after
        ``optimizer.step()`` with the rows :meth:`masked_rows` copied right before it.
        """
        counts = []
        for gi, rows_before in before.items():
            for c, prev in zip(self.groups[gi].compactors, rows_before, strict=True):
                index = self._masked_index(c)
                if len(index) != len(prev) or not len(index):
                    continue
                w = c.weight.view(c.weight.shape[0], -1)
                after = w.index_select(0, index)
                crossed = ((prev * after).sum(1) <= 0) & (after.abs().sum(1) > 0)
                stay = (~crossed).to(w.dtype).unsqueeze(1)
                w.index_copy_(0, index, after * stay)
                buf = optimizer.state.get(c.weight, {}).get("momentum_buffer") if optimizer is not None else None
                if buf is not None:
                    rows = buf.view(buf.shape[0], -1)
                    rows.index_copy_(0, index, rows.index_select(0, index) * stay)
                counts.append(crossed.sum())
        return torch.stack(counts).sum() if counts else torch.zeros((), dtype=torch.long)

    def register_step_hook(self, optimizer: torch.optim.Optimizer) -> list:
        """Run :meth:`reset_gradients` before every ``optimizer.step()`` and :meth:`settle_masked`
        after it; returns the two hook handles."""
        before: dict[int, list[torch.Tensor]] = {}

        def pre(*_):
            self.reset_gradients()
            before.clear()
            before.update(self.masked_rows())

        def post(*_):
            self.settle_masked(before, optimizer)

        return [optimizer.register_step_pre_hook(pre), optimizer.register_step_post_hook(post)]

    # ----------------------------------------------------------------------- cost
    def kept(self) -> np.ndarray:
        """Kept channels per group under the current masks."""
        return np.array([int(g.mask.sum()) for g in self.groups], dtype=np.float64)

    def flops(self, kept: np.ndarray | None = None) -> float:
        """FLOPs of the model after surgery (fvcore's convention), for the current masks."""
        return self.cost.flops(self.kept() if kept is None else kept)

    def params(self, kept: np.ndarray | None = None) -> float:
        """Parameters of the model after surgery, for the current masks."""
        return self.cost.params(self.kept() if kept is None else kept)

    @property
    def original_flops(self) -> int:
        """fvcore FLOPs of the network before compactors were attached."""
        return self.cost.original_flops

    @property
    def original_params(self) -> int:
        """Parameters of the network before compactors were attached."""
        return self.cost.original_params

    def min_units(self, group: ChannelGroup) -> int:
        """Fewest pruning units a group may keep under ``min_channels``, ``min_ratio`` and ``round_to``."""
        unit = group.spec.unit_size
        least = max(self.config.min_channels, math.ceil(self.config.min_ratio * group.spec.period * unit - 1e-9))
        for units in range(1, group.spec.period + 1):
            width = units * unit
            if width >= least and self.width_allowed(group, units):
                return units
        return group.spec.period

    def width_allowed(self, group: ChannelGroup, units: int) -> bool:
        """Whether keeping ``units`` units gives a width that is a multiple of ``round_to``."""
        return units == group.spec.period or (units * group.spec.unit_size) % self.config.round_to == 0

    def allowed_units(self, group: ChannelGroup, units: int, floor: int | None = None) -> int:
        """The fewest units >= ``units`` (and >= the group's minimum) that give an allowed width."""
        k = max(int(units), self.min_units(group) if floor is None else floor)
        while k < group.spec.period and not self.width_allowed(group, k):
            k += 1
        return k

    def min_flops(self) -> float:
        """FLOPs with every group at its minimum width (the lowest reachable cost)."""
        kept = np.array([self.min_units(g) * g.spec.unit_size for g in self.groups], dtype=float)
        return self.flops(kept)

    # ---------------------------------------------------------------------- masks
    def masks(self) -> dict[str, list[bool]]:
        """Masks by group name (JSON-serialisable)."""
        return {g.name: g.mask.tolist() for g in self.groups}

    def load_masks(self, masks: dict[str, list[bool]]) -> None:
        """Set masks saved by :meth:`masks`."""
        for g in self.groups:
            if g.name in masks:
                g.set_mask(torch.tensor(masks[g.name]))

    def summary(self) -> dict:
        """Counts for logs: groups, kept channels, FLOPs fraction."""
        return {
            "groups": len(self.groups),
            "kept_channels": int(self.kept().sum()),
            "channels": int(sum(g.channels for g in self.groups)),
            "flops_fraction": self.flops() / max(self.original_flops, 1),
        }
