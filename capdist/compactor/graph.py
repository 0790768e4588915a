"""Channel groups of a CNN from torch-pruning's DependencyGraph.

A *group* is a set of channels that must be removed together: the output
channels of one or more producer layers (several when a residual add couples
them), and the matching input channels of every consumer. This module traces a
model once and turns torch-pruning's groups into :class:`GroupSpec` records,
each either placeable (where its compactors go, of which kind) or rejected with
a one-line reason.

Example:
    >>> import torch, torchvision
    >>> m = torchvision.models.resnet18(num_classes=10)
    >>> specs = analyse(m, torch.randn(1, 3, 32, 32))
    >>> sum(s.reason is None and not s.residual for s in specs)
    8
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.dependency import index_mapping

from ..errors import UnsupportedModel

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
CHANNEL_MIXING_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d, nn.LocalResponseNorm)
RESIDUAL_OPS = ("AddBackward", "SubBackward")


@dataclass
class GroupSpec:
    """One channel group found by tracing.

    Attributes:
        name: the first producer's module name.
        channels: number of channels C in the group.
        period: channels per tile; grouped convs force the kept pattern to repeat
            every ``period`` channels, so pruning units are ``{b + k*period}``.
        producers: modules whose output channels are the group (dense, grouped,
            depthwise convs, linears).
        anchors: for each producer, the module the compactor follows (its BN, or itself).
        kinds: for each producer, ``"dense"``, ``"diagonal"`` or ``"linear"``.
        residual: True when a residual add ties the producers together.
        members: every (module name, ``"in"``/``"out"``, channel count) the group touches.
        consumers: (module name, input-channel indices, matching group channels) of every
            layer fed by the group.
        reason: why the group cannot be compacted, or None.
    """

    name: str
    channels: int
    period: int
    producers: list[str] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    residual: bool = False
    members: list[tuple[str, str, int]] = field(default_factory=list)
    consumers: list[tuple[str, list[int], list[int]]] = field(default_factory=list)
    reason: str | None = None

    @property
    def unit_size(self) -> int:
        """Channels removed together (one per tile)."""
        return self.channels // self.period


@contextlib.contextmanager
def _tolerant_reshape_mapping(unmapped: set) -> Iterator[None]:
    """Let torch-pruning skip reshapes it cannot map (e.g. a channel shuffle).

    torch-pruning 1.6.1 divides by zero on shufflenet's channel shuffle. The node
    is recorded in ``unmapped`` and every group through it is rejected instead.
    """
    original = index_mapping.update_reshape_index_mapping

    def tolerant(graph, node):
        try:
            original(graph, node)
        except (ZeroDivisionError, ValueError, RuntimeError):
            unmapped.add(node)

    index_mapping.update_reshape_index_mapping = tolerant
    try:
        yield
    finally:
        index_mapping.update_reshape_index_mapping = original


def _as_tuple(example_inputs) -> tuple:
    return tuple(example_inputs) if isinstance(example_inputs, (list, tuple)) else (example_inputs,)


class TracedModel:
    """A torch-pruning DependencyGraph plus what capdist needs to know about it.

    Args:
        model: the network to trace; its train/eval mode is restored afterwards.
        example_inputs: a tensor or tuple of tensors the model accepts.

    Raises:
        UnsupportedModel: when torch-pruning cannot trace the model.
    """

    def __init__(self, model: nn.Module, example_inputs) -> None:
        self.model = model
        self.unmapped: set = set()
        self.output_grad_fns: set = set()
        was_training = model.training
        inputs = _as_tuple(example_inputs)

        def forward(m: nn.Module, x) -> object:
            out = m(*inputs)
            for t in tp.utils.flatten_as_list(out):
                if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                    self.output_grad_fns.add(t.grad_fn)
            return out

        try:
            with torch.enable_grad(), self.patched():
                self.graph = tp.DependencyGraph().build_dependency(
                    model, inputs, forward_fn=forward, verbose=False
                )
        except UnsupportedModel:
            raise
        except Exception as exc:  # torch-pruning raises anything from assertions to KeyError
            name = type(model).__name__
            raise UnsupportedModel(
                f"torch-pruning cannot trace {name}: {type(exc).__name__}: {exc}".strip()
                + " (only models traceable by torch_pruning.DependencyGraph can take compactors)"
            ) from None
        finally:
            model.train(was_training)
        self.names = {m: n for n, m in model.named_modules()}

    def patched(self) -> contextlib.AbstractContextManager:
        """Context in which torch-pruning calls tolerate unmappable reshapes."""
        return _tolerant_reshape_mapping(self.unmapped)

    def all_groups(self) -> list[tuple[object, nn.Module, str | None]]:
        """torch-pruning groups rooted at every conv and linear layer.

        Returns:
            ``(group, root, error)`` triples; ``group`` is None and ``error`` says why
            when torch-pruning fails to build the group for that root.
        """
        graph = self.graph
        visited: set = set()
        found = []
        with torch.enable_grad(), self.patched():
            for m in list(graph.module2node):
                if not isinstance(m, (nn.Conv2d, nn.Linear)) or m in visited:
                    continue
                pruner = graph.get_pruner_of_module(m)
                if pruner is None or pruner.get_out_channels(m) is None:
                    continue
                try:
                    group = graph.get_pruning_group(
                        m, pruner.prune_out_channels, list(range(pruner.get_out_channels(m)))
                    )
                except Exception as exc:  # torch-pruning's index mapping fails on some ops
                    visited.add(m)
                    found.append((None, m, f"torch-pruning cannot map its channels "
                                           f"({type(exc).__name__} in index mapping)"))
                    continue
                for dep, _ in group:
                    if graph.is_out_channel_pruning_fn(dep.handler):
                        visited.add(dep.target.module)
                found.append((group, m, None))
        return found

    def is_out(self, dep) -> bool:
        return self.graph.is_out_channel_pruning_fn(dep.handler)

    def anchor_of(self, producer: nn.Module) -> nn.Module:
        """The BN that directly and only follows ``producer``, or the producer itself."""
        node = self.graph.module2node[producer]
        if len(node.outputs) == 1:
            nxt = node.outputs[0].module
            if isinstance(nxt, NORM_TYPES) and len(self.graph.module2node[nxt].inputs) == 1:
                return nxt
        return producer


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def _describe(group, traced: TracedModel) -> GroupSpec:
    names = traced.names
    producers: list[nn.Module] = []
    spec = GroupSpec(name="", channels=len(group[0].idxs), period=len(group[0].idxs))
    reasons: list[str] = []
    norms: list[nn.Module] = []
    for item in group:
        dep, idxs = item.dep, item.idxs
        node = dep.target
        module = node.module
        out = traced.is_out(dep)
        if isinstance(module, nn.Module) and module in names and not names[module] == "":
            name = names[module]
            spec.members.append((name, "out" if out else "in", len(idxs)))
            if not out and isinstance(module, (nn.Conv2d, nn.Linear)) and not _is_depthwise(module):
                roots = getattr(item, "root_idxs", None) or idxs
                spec.consumers.append((name, [int(i) for i in idxs], [int(r) for r in roots]))
        if out and node.grad_fn in traced.output_grad_fns or (out and not node.outputs):
            reasons.append("its channels are a model output (an embedding or the logits)")
        if node in traced.unmapped:
            reasons.append("its channels pass through a reshape torch-pruning cannot map "
                           "(a channel shuffle)")
        if isinstance(module, nn.Module):
            if out and isinstance(module, (nn.Conv2d, nn.Linear)):
                producers.append(module)
            elif isinstance(module, NORM_TYPES):
                norms.append(module)
            elif isinstance(module, CHANNEL_MIXING_NORMS):
                reasons.append(f"its channels pass through {type(module).__name__} "
                               f"'{names.get(module, '?')}', which mixes channels, so a "
                               "zeroed channel does not stay zero")
            elif isinstance(module, (nn.Conv1d, nn.Conv3d, nn.ConvTranspose2d)):
                reasons.append(f"{type(module).__name__} '{names.get(module, '?')}' "
                               "is not supported")
        name_fn = getattr(getattr(node, "grad_fn", None), "name", None)
        if callable(name_fn) and name_fn().startswith(RESIDUAL_OPS):
            spec.residual = True
    if not producers:
        reasons.append("no conv or linear layer produces these channels")
    spec.name = names.get(producers[0], "?") if producers else names.get(group[0].dep.target.module, "?")
    grouped = []
    anchors = []
    for p in producers:
        pname = names[p]
        spec.producers.append(pname)
        if isinstance(p, nn.Conv2d) and p.transposed:
            reasons.append(f"transposed conv '{pname}' is not supported")
        anchor = traced.anchor_of(p)
        anchors.append(anchor)
        spec.anchors.append(names[anchor])
        if isinstance(p, nn.Linear):
            spec.kinds.append("linear")
        elif p.groups > 1:
            spec.kinds.append("diagonal")
            if not _is_depthwise(p):
                grouped.append(p.groups)
        else:
            spec.kinds.append("dense")
    for dep, _ in group:
        m = dep.target.module
        if isinstance(m, nn.Conv2d) and m.groups > 1 and not _is_depthwise(m):
            grouped.append(m.groups)
        elif isinstance(m, nn.Conv2d) and m.groups > 1 and m.out_channels != m.in_channels:
            reasons.append(f"grouped conv '{names.get(m, '?')}' with a channel multiplier "
                           "is not supported")
    for g in grouped:
        per = spec.channels // g if spec.channels % g == 0 else 0
        if per == 0:
            reasons.append(f"a grouped conv with {g} groups does not divide {spec.channels} channels")
        else:
            spec.period = math.gcd(spec.period, per)
    stray = [names.get(n, "?") for n in norms if n not in anchors]
    if stray:
        reasons.append(f"its channels pass through BatchNorm '{stray[0]}' after the compactor "
                       "(pre-activation layout), so a zeroed channel does not stay zero")
    if reasons:
        spec.reason = reasons[0]
    return spec


def analyse(model: nn.Module, example_inputs, traced: TracedModel | None = None) -> list[GroupSpec]:
    """Trace ``model`` and describe every channel group.

    Args:
        model: any CNN torch-pruning can trace.
        example_inputs: inputs the model accepts (a small batch is enough).
        traced: an existing trace to reuse.

    Returns:
        One :class:`GroupSpec` per torch-pruning group; ``reason`` says why a group
        cannot take compactors.
    """
    traced = traced or TracedModel(model, example_inputs)
    specs = []
    for group, root, error in traced.all_groups():
        if group is None:
            size = root.out_channels if isinstance(root, nn.Conv2d) else root.out_features
            specs.append(GroupSpec(name=traced.names[root], channels=size, period=size,
                                   producers=[traced.names[root]], reason=error))
        else:
            specs.append(_describe(group, traced))
    return specs
