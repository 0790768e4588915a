"""Feature capture by module name with forward hooks.

Works on plain, DDP-wrapped and compactor-attached models (it records what the
module hands on, i.e. after its compactor). What it records is a *copy* (or a pooled
copy): torchvision's blocks run ``ReLU(inplace=True)`` on the very tensor a hook sees,
so a kept reference would be rewritten after the hook returned.

Example:
    >>> import torch, torchvision
    >>> m = torchvision.models.resnet18().eval()
    >>> cap = FeatureCapture(m, ["layer1", "layer4"])
    >>> _ = m(torch.randn(1, 3, 32, 32)); cap.features["layer4"].shape
    torch.Size([1, 512, 1, 1])
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from ..errors import CapdistError
from .features import pool_features


class UnknownFeature(CapdistError):
    """A feature name that is not a module of the model."""


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP / DataParallel / Teacher wrapper."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    if type(model).__name__ == "Teacher":
        model = model.model
    return model


def resolve(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; a clear error with close matches otherwise."""
    modules = dict(unwrap(model).named_modules())
    if name in modules and name:
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownFeature(f"feature '{name}' is not a module of {type(unwrap(model)).__name__}{hint}")


class FeatureCapture:
    """Record the outputs of named modules on every forward pass.

    Args:
        model: the network (wrapped or not).
        names: module names, e.g. ``["backbone.layer3"]``.
        inputs: record what each module receives (its first input) instead of what it returns.
        pool: record the globally pooled (B, C) feature instead of a full copy (cheaper, and all
            that pooled losses and the retrieval schedule read).
    """

    def __init__(self, model: nn.Module, names: list[str], inputs: bool = False, pool: bool = False) -> None:
        self.features: dict[str, torch.Tensor] = {}
        self._hooks = []
        self.inputs = inputs
        self.pool = pool
        for name in dict.fromkeys(names):
            module = resolve(model, name)
            self._hooks.append(module.register_forward_hook(self._record(name)))

    def _record(self, name: str):
        def hook(_module, inputs, output):
            value = inputs if self.inputs else output
            value = value if isinstance(value, torch.Tensor) else value[0]
            kept = pool_features(value) if self.pool else value
            self.features[name] = kept.clone() if kept is value else kept
        return hook

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
