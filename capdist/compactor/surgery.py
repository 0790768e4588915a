"""Surgery: fold BN and compactors into producers, then remove dead channels (ResRep, ICCV 2021).

``surgery(cm, x)`` returns a plain network (no compactors) with physically fewer
channels whose outputs equal the *masked* model's (masked compactor rows zeroed),
the max abs difference measured on ``x``, and a JSON plan. ``replay(fresh, plan)``
repeats the structural part on a fresh instance of the architecture, so a pruned
model reloads from a plain safetensors state dict with no pickle.

Example:
    >>> res = surgery(cm, torch.randn(2, 3, 32, 32))  # doctest: +SKIP
    >>> res.max_abs_diff < 1e-4  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import CheckpointError, SurgeryError
from .graph import TracedModel
from .layers import compactor_of, uninstall
from .model import ChannelGroup, CompactorModel

PLAN_VERSION = 1


@dataclass
class SurgeryResult:
    """What surgery produced.

    Attributes:
        model: the plain pruned network, in eval mode.
        max_abs_diff: max |pruned(x) - masked(x)| on the example inputs.
        rel_diff: ``max_abs_diff`` divided by max |masked(x)| (the output scale).
        drift: max |masked(x) - trained(x)|: how far zeroing the masked rows moved
            the outputs (large when masked rows had not yet decayed).
        plan: JSON-serialisable description for :func:`replay`.
    """

    model: nn.Module
    max_abs_diff: float
    rel_diff: float
    drift: float
    plan: dict


def _outputs(model: nn.Module, inputs: tuple) -> list[torch.Tensor]:
    out = model(*inputs)
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [v for v in out.values() if isinstance(v, torch.Tensor)]
    return [t for t in out if isinstance(t, torch.Tensor)]


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b, strict=True))


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


EQUIVALENCE_TOLERANCE = 1e-3


def removed_channels(cm: CompactorModel, group: ChannelGroup, threshold: float) -> list[int]:
    """Channels surgery removes: masked units plus units whose joint norm is below threshold.

    Respects ``round_to`` (keeps the strongest extra units to reach an allowed width)
    and keeps at least the group's minimum width.
    """
    unit_mask = group.kept_units()
    norms = group.unit_norms()
    keep = unit_mask & (norms >= threshold)
    kept = int(keep.sum())
    target = cm.allowed_units(group, kept)
    if target > kept:
        order = torch.argsort(norms.masked_fill(keep, float("-inf")), descending=True)
        keep[order[: target - kept]] = True
    channel_keep = group.units_to_mask(keep)
    return [int(i) for i in torch.nonzero(~channel_keep).flatten()]


@torch.no_grad()
def _fold(producer: nn.Module, norm: nn.Module | None, compactor: nn.Module) -> None:
    """Fold ``norm`` (BN, eval statistics) and ``compactor`` into ``producer`` in place."""
    weight = producer.weight.detach()
    out = weight.shape[0]
    bias = producer.bias.detach() if producer.bias is not None else torch.zeros(
        out, dtype=weight.dtype, device=weight.device)
    if norm is not None:
        scale = norm.weight.detach() if norm.weight is not None else torch.ones_like(bias)
        shift = norm.bias.detach() if norm.bias is not None else torch.zeros_like(bias)
        inv = torch.rsqrt(norm.running_var + norm.eps)
        weight = weight * (scale * inv).view(-1, *([1] * (weight.dim() - 1)))
        bias = shift + (bias - norm.running_mean) * scale * inv
    if getattr(compactor, "kind", "") == "diagonal":
        q = compactor.weight.detach().view(-1)
        weight = weight * q.view(-1, *([1] * (weight.dim() - 1)))
        bias = bias * q
    else:
        q = compactor.matrix().detach()
        weight = (q @ weight.reshape(out, -1)).reshape(weight.shape)
        bias = q @ bias
    producer.weight = nn.Parameter(weight.contiguous())
    producer.bias = nn.Parameter(bias.contiguous())


def _restructure(model: nn.Module, plan: dict) -> None:
    """Give producers a bias and replace folded norms by Identity (no values)."""
    for entry in plan["folded"]:
        producer = model.get_submodule(entry["producer"])
        if producer.bias is None:
            out = producer.weight.shape[0]
            producer.bias = nn.Parameter(torch.zeros(out, dtype=producer.weight.dtype,
                                                     device=producer.weight.device))
        if entry["norm"]:
            _set_module(model, entry["norm"], nn.Identity())


def _prune(model: nn.Module, plan: dict) -> None:
    """Remove the planned channels of every group through torch-pruning."""
    device = next(model.parameters()).device
    inputs = tuple(torch.zeros(shape, device=device) for shape in plan["input_shapes"])
    traced = TracedModel(model, inputs)
    graph = traced.graph
    with torch.enable_grad(), traced.patched():
        for entry in plan["groups"]:
            if not entry["removed"]:
                continue
            root = model.get_submodule(entry["producers"][0])
            pruner = graph.get_pruner_of_module(root)
            group = graph.get_pruning_group(root, pruner.prune_out_channels, entry["removed"])
            group.prune()


def surgery(cm: CompactorModel, example_inputs=None, threshold: float | None = None,
            tolerance: float | None = EQUIVALENCE_TOLERANCE) -> SurgeryResult:
    """Fold every compactor away and physically remove masked and dead channels.

    Args:
        cm: the handle returned by :func:`attach`; its model is not modified.
        example_inputs: inputs on which equivalence is measured (default: the ones
            used to attach; pass real data for a meaningful figure).
        threshold: remove rows with a joint norm below this (default: config's 1e-5).
        tolerance: largest accepted difference between the pruned and the masked model's
            outputs, relative to the largest output (None: report it, never raise).

    Raises:
        SurgeryError: the pruned model differs from the masked one beyond ``tolerance``.

    Returns:
        A :class:`SurgeryResult`.
    """
    threshold = cm.config.threshold if threshold is None else threshold
    inputs = example_inputs if example_inputs is not None else cm.example_inputs
    inputs = tuple(inputs) if isinstance(inputs, (list, tuple)) else (inputs,)
    trace_inputs = tuple(x[:1] for x in inputs)
    model = copy.deepcopy(cm.model).eval()
    modules = dict(model.named_modules())
    plan: dict = {"version": PLAN_VERSION, "input_shapes": [list(x.shape) for x in trace_inputs],
                  "folded": [], "groups": []}
    with torch.no_grad():
        trained = _outputs(model, inputs)
        for group in cm.groups:
            dead = (~group.mask).to(torch.float32)
            for anchor in group.spec.anchors:
                comp = compactor_of(modules[anchor])
                comp.weight.mul_((1 - dead).view(-1, *([1] * (comp.weight.dim() - 1)))
                                 .to(comp.weight.dtype))
        masked = _outputs(model, inputs)
    for group in cm.groups:
        plan["groups"].append({"name": group.name, "producers": group.spec.producers,
                               "removed": removed_channels(cm, group, threshold)})
        for producer, anchor in zip(group.spec.producers, group.spec.anchors, strict=True):
            anchor_module = modules[anchor]
            norm = anchor_module if anchor != producer else None
            _fold(modules[producer], norm, compactor_of(anchor_module))
            uninstall(anchor_module)
            plan["folded"].append({"producer": producer, "norm": anchor if norm is not None else None})
    for entry in plan["folded"]:
        if entry["norm"]:
            _set_module(model, entry["norm"], nn.Identity())
    _prune(model, plan)
    model.eval()
    with torch.no_grad():
        pruned = _outputs(model, inputs)
    diff = _max_diff(pruned, masked)
    scale = max(float(t.float().abs().max()) for t in masked) or 1.0
    if tolerance is not None and diff / scale > tolerance:
        raise SurgeryError(f"the pruned model's outputs differ from the masked model's by {diff / scale:.2e} of "
                           f"their scale (tolerance {tolerance:g}): a mask or a layer that surgery cannot follow; "
                           "run `capdist inspect` on the model, or pass tolerance=None to keep the result")
    return SurgeryResult(model=model, max_abs_diff=diff, rel_diff=diff / scale,
                         drift=_max_diff(masked, trained), plan=plan)


def replay(model: nn.Module, plan: dict) -> nn.Module:
    """Give a fresh instance of the architecture the pruned shapes recorded in ``plan``.

    Values are not restored: load the pruned state dict afterwards.

    Raises:
        CheckpointError: the plan does not fit this architecture.
    """
    if plan.get("version") != PLAN_VERSION:
        raise CheckpointError(f"pruning plan version {plan.get('version')} is not supported "
                              f"(this capdist reads version {PLAN_VERSION})")
    try:
        _restructure(model, plan)
        _prune(model, plan)
    except (AttributeError, KeyError, IndexError, AssertionError) as exc:
        raise CheckpointError(f"the pruning plan does not fit this architecture "
                              f"({type(exc).__name__}: {exc}); rebuild it with the same model") from None
    return model.eval()
