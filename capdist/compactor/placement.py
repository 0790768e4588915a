"""Attach compactors to any CNN torch-pruning can trace (ResRep, ICCV 2021; CDD, CVPR 2023).

Example:
    >>> import torch, torchvision
    >>> from capdist.compactor import CompactorConfig, attach
    >>> net = torchvision.models.mobilenet_v2(num_classes=10)
    >>> cm = attach(net, torch.randn(1, 3, 32, 32), CompactorConfig(scope="all"))
    >>> len(cm.groups) > 0
    True
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import UnsupportedModel
from .config import CompactorConfig, Scope
from .cost import CostModel
from .graph import GroupSpec, TracedModel, analyse
from .layers import Compactor, DiagonalCompactor, LinearCompactor, compactor_of, install, uninstall
from .model import ChannelGroup, CompactorModel

KINDS = {"dense": Compactor, "diagonal": DiagonalCompactor, "linear": LinearCompactor}


def built_kind(spec: GroupSpec, kind: str, config: CompactorConfig) -> str:
    """The compactor kind :func:`attach` installs where the graph asks for ``kind`` (a residual stream
    gets a per-channel scale under ``config.diagonal_residual``, any other group under
    ``config.diagonal_internal``)."""
    diagonal = config.diagonal_residual if spec.residual else config.diagonal_internal
    return "diagonal" if kind == "dense" and diagonal else kind


def plan_groups(model: nn.Module, example_inputs, config: CompactorConfig,
                traced: TracedModel | None = None
                ) -> tuple[list[GroupSpec], list[tuple[GroupSpec, str]]]:
    """Decide which groups get compactors, without touching the model.

    Returns:
        ``(chosen, skipped)``; every skipped group comes with a one-line reason.
    """
    specs = analyse(model, example_inputs, traced)
    modules = dict(model.named_modules())
    chosen: list[GroupSpec] = []
    skipped: list[tuple[GroupSpec, str]] = []
    for spec in specs:
        touched = {n for n, _, _ in spec.members} | set(spec.producers)
        pinned = sorted(touched & set(config.pinned))
        if spec.reason:
            skipped.append((spec, spec.reason))
        elif pinned:
            skipped.append((spec, f"pinned ('{pinned[0]}')"))
        elif spec.residual and config.scope is Scope.INTERNAL:
            skipped.append((spec, "tied by a residual add (scope='all' compacts it)"))
        elif config.filter_fn is not None and not all(
            config.filter_fn(modules[p], p) for p in spec.producers
        ):
            skipped.append((spec, "excluded by filter_fn"))
        else:
            chosen.append(spec)
    return chosen, skipped


SOFT_REASONS = ("tied by", "pinned", "excluded", "its channels are a model output")


def blocking(skipped: list[tuple[GroupSpec, str]]) -> list[tuple[GroupSpec, str]]:
    """Skipped groups that a layer or op prevents (not scope, pins or the user's filter)."""
    return [(s, r) for s, r in skipped if not r.startswith(SOFT_REASONS)]


def _zero_probe(cm: CompactorModel, inputs: tuple) -> list[tuple[ChannelGroup, str]]:
    """Check that masked channels reach every consumer as exactly zero.

    Masks every other unit of every group, randomises BatchNorm statistics and
    biases (so zeros cannot come from a fresh initialisation by luck), runs one
    forward pass in eval mode and reads each consumer's input. Returns the groups
    whose masked channels leak, with the consumer they leak into. Everything is
    restored afterwards.
    """
    model = cm.model
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    was_training = model.training
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    consumers = {c[0] for g in cm.groups for c in g.spec.consumers}

    def record(name: str):
        def hook(_m, args):
            if args and isinstance(args[0], torch.Tensor):
                seen[name] = args[0].detach()
        return hook

    for name in consumers:
        hooks.append(modules[name].register_forward_pre_hook(record(name)))
    leaks = []
    try:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
                    if m.bias is not None:
                        m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
                elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
            for g in cm.groups:
                units = torch.arange(g.spec.period) % 2 == 0
                units[0] = True
                g.set_mask(g.units_to_mask(units))
                for c in g.compactors:
                    c.weight.mul_(c.mask.view(-1, *([1] * (c.weight.dim() - 1))).to(c.weight.dtype))
            model.eval()
            model(*inputs)
        for g in cm.groups:
            dead = ~g.mask
            for name, idxs, roots in g.spec.consumers:
                x = seen.get(name)
                if x is None:
                    continue
                dim = -1 if isinstance(modules[name], nn.Linear) else 1
                dead_cols = torch.tensor([i for i, r in zip(idxs, roots, strict=True) if dead[r]],
                                         dtype=torch.long)
                if dead_cols.numel() and x.index_select(dim, dead_cols).abs().max() > 0:
                    leaks.append((g, name))
                    break
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for key, value in model.state_dict().items():
                value.copy_(saved[key])
        model.train(was_training)
    return leaks


def attach(model: nn.Module, example_inputs, config: CompactorConfig | None = None,
           strict: bool = False) -> CompactorModel:
    """Insert compactors into ``model`` in place and return the handle that trains and cuts them.

    Args:
        model: any CNN (torchvision or your own) that torch-pruning can trace.
        example_inputs: a tensor (or tuple) the model accepts; a batch of 1-2 at a
            small resolution is enough.
        config: placement options; defaults to ``CompactorConfig()`` (scope internal).
        strict: raise on the first group that cannot take compactors instead of
            skipping it with a warning.

    Returns:
        A :class:`CompactorModel`; ``cm.model is model``.

    Raises:
        UnsupportedModel: the model cannot be traced, nothing can be compacted, or
            (with ``strict``) a group cannot; the model is left unmodified.
    """
    config = config or CompactorConfig()
    inputs = tuple(example_inputs) if isinstance(example_inputs, (list, tuple)) else (example_inputs,)
    if any(compactor_of(m) is not None for m in model.modules()):
        raise UnsupportedModel("the model already has compactors attached; attach once per model")
    was_training = model.training
    traced = TracedModel(model, inputs)
    chosen, skipped = plan_groups(model, inputs, config, traced)
    hard = blocking(skipped)
    if strict and hard:
        spec, reason = hard[0]
        raise UnsupportedModel(f"cannot compact '{spec.name}': {reason}; exclude it with "
                               "CompactorConfig(filter_fn=...)")
    if not chosen:
        why = skipped[0][1] if skipped else "no conv or linear layer found"
        raise UnsupportedModel(f"no channel group of {type(model).__name__} can take compactors "
                               f"(first reason: {why})")
    modules = dict(model.named_modules())
    folded = {a for s in chosen for a in s.anchors
              if isinstance(modules[a], nn.modules.batchnorm._BatchNorm)}
    biased = {p for s in chosen for p in s.producers if getattr(modules[p], "bias", None) is None}
    cost = CostModel(model, inputs, chosen, folded, biased)
    groups: list[ChannelGroup] = []
    try:
        for i, spec in enumerate(chosen):
            group = ChannelGroup(spec=spec, index=i)
            for producer, anchor, kind in zip(spec.producers, spec.anchors, spec.kinds, strict=True):
                weight = modules[producer].weight
                kind = built_kind(spec, kind, config)
                comp = KINDS[kind](spec.channels).to(device=weight.device, dtype=weight.dtype)
                install(modules[anchor], comp)
                group.compactors.append(comp)
            groups.append(group)
        cm = CompactorModel(model, config, groups, skipped, cost, inputs)
        leaks = _zero_probe(cm, inputs)
    except Exception:
        for m in model.modules():
            uninstall(m)
        model.train(was_training)
        raise
    if leaks:
        bad = {id(g) for g, _ in leaks}
        for g, consumer in leaks:
            for anchor in g.spec.anchors:
                uninstall(modules[anchor])
            skipped.append((g.spec, f"a masked channel does not reach '{consumer}' as zero "
                                    "(a non-zero-preserving op follows the compactor)"))
        kept_specs = [g.spec for g in groups if id(g) not in bad]
        groups = [g for g in groups if id(g) not in bad]
        for i, g in enumerate(groups):
            g.index = i
        if not groups:
            raise UnsupportedModel(f"no channel group of {type(model).__name__} keeps masked "
                                   "channels at zero; it cannot take compactors")
        folded = {a for s in kept_specs for a in s.anchors
                  if isinstance(modules[a], nn.modules.batchnorm._BatchNorm)}
        biased = {p for s in kept_specs for p in s.producers
                  if getattr(modules[p], "bias", None) is None}
        for m in model.modules():
            comp = compactor_of(m)
            if comp is not None:
                uninstall(m)
                m._capdist_stash = comp
        cost = CostModel(model, inputs, kept_specs, folded, biased)
        for m in model.modules():
            comp = getattr(m, "_capdist_stash", None)
            if comp is not None:
                del m._capdist_stash
                install(m, comp)
        cm = CompactorModel(model, config, groups, skipped, cost, inputs)
    for g in groups:
        g.set_mask(torch.ones(g.channels, dtype=torch.bool))
    model.train(was_training)
    hard = blocking(cm.skipped)
    if hard:
        warnings.warn(f"capdist: {len(hard)} channel group(s) left without compactors, e.g. "
                      f"'{hard[0][0].name}': {hard[0][1]} (capdist inspect lists them all)",
                      stacklevel=2)
    return cm


def detach(cm: CompactorModel) -> nn.Module:
    """Remove every compactor and return the network as it was before :func:`attach`."""
    for m in cm.model.modules():
        uninstall(m)
    return cm.model
