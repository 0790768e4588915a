"""Analytic FLOPs and parameter model for a compacted network.

The FLOPs of the pruned model are a product of two linear forms of the group
keep-fractions per layer, so a candidate width vector costs one small matrix
product (microseconds), not a trace. The per-layer base counts come from one
fvcore trace of the original model, so the model agrees with fvcore run on the
result of surgery (to within the functional ops fvcore attributes to no layer).

Counts describe the plain model *after* surgery: BatchNorms that are folded into
their producer cost nothing, and the producer gains a bias.

Example:
    >>> # built by capdist.compactor.attach; cm.flops() calls CostModel.flops
"""

from __future__ import annotations

import numpy as np
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from .graph import GroupSpec


def _channels(module: nn.Module, direction: str) -> int | None:
    if isinstance(module, nn.Conv2d):
        return module.in_channels if direction == "in" else module.out_channels
    if isinstance(module, nn.Linear):
        return module.in_features if direction == "in" else module.out_features
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.num_features
    return None


def execution_order(model: nn.Module, example_inputs) -> list[str]:
    """Names of the leaf modules in the order one forward pass calls them."""
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda _m, _a, n=name: order.append(n))
             for name, m in model.named_modules() if not list(m.children())]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return order


def fvcore_counts(model: nn.Module, example_inputs) -> tuple[dict[str, int], dict[str, int]]:
    """fvcore FLOPs per module name (one multiply-add = one FLOP, ``""`` is the total) and the
    operators fvcore skipped, traced in eval mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, example_inputs)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return dict(analysis.by_module()), dict(analysis.unsupported_ops())
    finally:
        model.train(was_training)


def fvcore_by_module(model: nn.Module, example_inputs) -> dict[str, int]:
    """fvcore FLOPs per module name, in eval mode."""
    return fvcore_counts(model, example_inputs)[0]


class CostModel:
    """FLOPs and params of the plain network after surgery, as a function of kept widths.

    Args:
        model: the original network (no compactors attached yet).
        example_inputs: inputs used for the fvcore trace.
        specs: the groups that receive compactors, in group-index order.
        folded: names of the BatchNorms surgery folds into their producers.
        biased: names of producers that gain a bias when folded.
    """

    def __init__(self, model: nn.Module, example_inputs, specs: list[GroupSpec],
                 folded: set[str], biased: set[str]) -> None:
        by_module = fvcore_by_module(model, example_inputs)
        self.original_flops = int(by_module.get("", 0))
        self.original_params = int(sum(p.numel() for p in model.parameters()))
        modules = dict(model.named_modules())
        self.channels = np.array([s.channels for s in specs], dtype=np.float64)
        group_count = len(specs)
        own: dict[str, int] = {}
        for name, module in modules.items():
            children = sum(by_module.get(f"{name}.{c}" if name else c, 0)
                           for c, _ in module.named_children())
            own[name] = int(by_module.get(name, 0)) - int(children)
        index = {n: i for i, n in enumerate(modules)}
        count = len(modules)
        w_in = np.zeros((count, group_count))
        w_out = np.zeros((count, group_count))
        for g, spec in enumerate(specs):
            for name, direction, n in spec.members:
                module = modules[name]
                total = _channels(module, direction)
                if not total:
                    continue
                depthwise = (isinstance(module, nn.Conv2d) and module.groups > 1
                             and module.groups == module.in_channels)
                if direction == "in" and depthwise:
                    continue
                (w_in if direction == "in" else w_out)[index[name], g] += n / total
        self._follow_channels(model, example_inputs, modules, index, own, w_out)
        flops = np.array([own.get(n, 0) for n in modules], dtype=np.float64)
        weights = np.zeros(count)
        biases = np.zeros(count)
        for name, module in modules.items():
            for pname, p in module.named_parameters(recurse=False):
                if isinstance(module, (nn.Conv2d, nn.Linear)) and pname == "weight":
                    weights[index[name]] += p.numel()
                else:
                    biases[index[name]] += p.numel()
        for name in folded:
            flops[index[name]] = 0.0
            biases[index[name]] = 0.0
        for name in biased:
            biases[index[name]] += _channels(modules[name], "out") or 0
        self._w_in, self._w_out = w_in, w_out
        self._flops, self._weights, self._biases = flops, weights, biases
        self.module_names = list(modules)

    @staticmethod
    def _follow_channels(model, example_inputs, modules, index, own, w_out) -> None:
        """Pooling and other channel-wise layers torch-pruning does not list in any group
        scale with the output channels of the conv/linear/BN that ran just before them."""
        last = None
        for name in execution_order(model, example_inputs):
            module = modules[name]
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
                last = name
            elif own.get(name, 0) > 0 and last is not None and not w_out[index[name]].any():
                w_out[index[name]] = w_out[index[last]]

    def _fractions(self, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        removed = 1.0 - np.asarray(kept, dtype=np.float64) / self.channels
        return 1.0 - self._w_in @ removed, 1.0 - self._w_out @ removed

    def layer_fractions(self, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Kept fraction of every module's input and output channels (order: :attr:`module_names`)
        when group ``g`` keeps ``kept[g]`` channels."""
        if len(self.channels) == 0:
            ones = np.ones(len(self.module_names))
            return ones, ones
        return self._fractions(kept)

    def varying_widths(self) -> dict[str, tuple[bool, bool]]:
        """Module name -> (its input width may change, its output width may change)."""
        return {n: (bool(self._w_in[i].any()), bool(self._w_out[i].any())) for i, n in enumerate(self.module_names)}

    def flops(self, kept: np.ndarray) -> float:
        """FLOPs after surgery when group ``g`` keeps ``kept[g]`` channels."""
        if len(self.channels) == 0:
            return float(self._flops.sum())
        f_in, f_out = self._fractions(kept)
        return float(self._flops @ (f_in * f_out))

    def params(self, kept: np.ndarray) -> float:
        """Parameters after surgery when group ``g`` keeps ``kept[g]`` channels."""
        if len(self.channels) == 0:
            return float(self._weights.sum() + self._biases.sum())
        f_in, f_out = self._fractions(kept)
        return float(self._weights @ (f_in * f_out) + self._biases @ f_out)
