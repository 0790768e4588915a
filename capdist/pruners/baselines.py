"""Baseline structured pruning (magnitude: Li et al., ICLR 2017; Taylor: Molchanov et al., CVPR 2019;
BN-scale: Liu et al., ICCV 2017; LAMP: Lee et al., ICLR 2021; FPGM: He et al., CVPR 2019; random)
through torch-pruning, landing on a FLOPs target by bisection on the channel ratio.

A pruning ratio is per channel, not per FLOP, so every method is searched to the same
fvcore FLOPs. The embedding width (any channel group that reaches the model's output) is
never pruned, so a compressed query encoder still matches the teacher's gallery.
Left out: torch-pruning's Hessian importance keeps only the last sample's gradient, and
its GrowingRegPruner never regularises BN; neither is offered.

Example:
    >>> res = prune_to_flops(model, x, "magnitude", 0.35)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from ..compactor.cost import fvcore_by_module
from ..compactor.graph import analyse
from ..errors import UnreachableTarget, UnsupportedModel

METHODS: dict[str, Callable[[], object]] = {
    "magnitude": lambda: tp.importance.MagnitudeImportance(p=1),
    "l2": lambda: tp.importance.MagnitudeImportance(p=2),
    "taylor": lambda: tp.importance.TaylorImportance(),
    "bn_scale": lambda: tp.importance.BNScaleImportance(),
    "lamp": lambda: tp.importance.LAMPImportance(p=2),
    "fpgm": lambda: tp.importance.FPGMImportance(),
    "random": lambda: tp.importance.RandomImportance(),
}


@dataclass
class PruneResult:
    """A pruned plain model and how to rebuild it."""

    model: nn.Module
    plan: dict
    ratio: float
    flops: int
    original_flops: int


def _outputs(out) -> list[torch.Tensor]:
    if isinstance(out, dict):
        return [v for v in out.values() if isinstance(v, torch.Tensor)]
    return list(out) if isinstance(out, (list, tuple)) else [out]


def pinned_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Producers whose output channels reach the model's outputs (embedding, logits)."""
    modules = dict(model.named_modules())
    return [modules[p] for s in analyse(model, example) if s.reason and "model output" in s.reason
            for p in s.producers]


def _prune_once(model: nn.Module, example: torch.Tensor, method: str, ratio: float, round_to: int | None,
                global_pruning: bool, loss_fn: Callable[[nn.Module], torch.Tensor] | None) -> tuple[nn.Module, list]:
    net = copy.deepcopy(model)
    was = net.training
    pruner = tp.pruner.MetaPruner(net, example, METHODS[method](), pruning_ratio=ratio,
                                  global_pruning=global_pruning, ignored_layers=pinned_layers(net, example),
                                  round_to=round_to, output_transform=_outputs)
    if method == "taylor":
        if loss_fn is None:
            raise UnsupportedModel("Taylor importance needs a loss on a batch (pass loss_fn)")
        net.train()
        net.zero_grad()
        loss_fn(net).backward()
    pruner.step()
    net.zero_grad(set_to_none=True)
    net.train(was)
    return net, pruner.DG.pruning_history()


def prune_to_flops(model: nn.Module, example: torch.Tensor, method: str, target: float, round_to: int | None = None,
                   global_pruning: bool = False, loss_fn: Callable[[nn.Module], torch.Tensor] | None = None,
                   tolerance: float = 0.01, iterations: int = 14,
                   cost: Callable[[nn.Module], float] | None = None, cost_name: str = "FLOPs") -> PruneResult:
    """Prune a copy of ``model`` with ``method`` so its fvcore FLOPs (or another cost) land just under ``target``.

    Args:
        model: the trained network (not modified).
        example: one input batch for tracing and counting (batch 1 is enough).
        method: a key of :data:`METHODS`.
        target: FLOPs as a fraction of the original.
        round_to: kept widths are multiples of this.
        global_pruning: rank channels across layers (else the same ratio per layer).
        loss_fn: ``loss_fn(model) -> scalar`` on a batch, for Taylor importance.
        tolerance: stop once within this fraction below the target.
        cost: ``cost(pruned) -> fraction of the original`` to bisect on instead of FLOPs (e.g. a
            latency table's prediction).
        cost_name: what ``cost`` measures, for messages.

    Raises:
        UnsupportedModel: unknown method.
        UnreachableTarget: the method cannot get that low.
    """
    if method not in METHODS:
        raise UnsupportedModel(f"unknown pruning method '{method}'; valid: {', '.join(METHODS)}")
    example = example[:1]
    original = fvcore_by_module(model, (example,))[""]

    def fraction(net: nn.Module) -> float:
        return cost(net) if cost is not None else fvcore_by_module(net, (example,))[""] / original

    lo, hi = 0.0, 0.95
    best = None
    for _ in range(iterations):
        mid = (lo + hi) / 2
        net, history = _prune_once(model, example, method, mid, round_to, global_pruning, loss_fn)
        got = fraction(net)
        if got <= target:
            best = (net, history, mid)
            hi = mid
            if got >= target * (1 - tolerance):
                break
        else:
            lo = mid
    if best is None:
        net, history = _prune_once(model, example, method, 0.95, round_to, global_pruning, loss_fn)
        raise UnreachableTarget(f"{method} pruning cannot reach {target:.3f} of the {cost_name} (lowest "
                                f"{fraction(net):.3f} at ratio 0.95); raise the target")
    net, history, ratio = best
    flops = fvcore_by_module(net, (example,))[""]
    plan = {"version": 1, "kind": "torch-pruning", "method": method, "ratio": ratio,
            "input_shapes": [list(example.shape)], "tp_history": history}
    return PruneResult(model=net, plan=plan, ratio=ratio, flops=int(flops), original_flops=int(original))


def replay_history(model: nn.Module, plan: dict) -> nn.Module:
    """Give a fresh instance the shapes a torch-pruning plan recorded."""
    inputs = tuple(torch.zeros(s) for s in plan["input_shapes"])
    was = model.training
    graph = tp.DependencyGraph().build_dependency(model, inputs, output_transform=_outputs, verbose=False)
    graph.load_pruning_history(plan["tp_history"])
    return model.train(was).eval()
