"""Weights in and out: safetensors (no pickle), weights-only torch checkpoints, and the mapping of
a checkpoint's keys onto a model.

A checkpoint's keys often differ from the model's by a prefix (``backbone.``, ``model.``, a
plain torchvision state dict loaded into a wrapper). :func:`fit_keys` tries the prefix
mappings the two key sets suggest and keeps the one under which the most tensors fit.

Example:
    >>> import torch, tempfile, os
    >>> m = torch.nn.Linear(2, 2); p = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> save_weights(m, p); load_weights(torch.nn.Linear(2, 2), p).exact
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save

from ..errors import CheckpointError
from .atomic import atomic_write_bytes
from .checkpoints import read_state_dict


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write the model's state dict as safetensors, atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata=metadata))


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a weights-only torch file (never unpickles code)."""
    return read_state_dict(path)


@dataclass
class KeyFit:
    """How a checkpoint's keys map onto a model's.

    Attributes:
        state: the checkpoint's tensors under the model's key names (only those that fit).
        strip: prefix removed from the checkpoint's keys.
        add: prefix put in front of them.
        missing: model keys the checkpoint does not provide.
        unexpected: checkpoint keys (as saved) with no place in the model.
        wrong_shape: ``key (saved) vs (model)`` for keys that exist with another shape.
    """

    state: dict[str, torch.Tensor]
    strip: str = ""
    add: str = ""
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    def mapping(self) -> str:
        """How the keys were mapped, in words."""
        if not (self.strip or self.add):
            return "keys as saved"
        parts = ([f"stripped '{self.strip}'"] if self.strip else []) + ([f"added '{self.add}'"] if self.add else [])
        return " and ".join(parts)

    def problems(self) -> str:
        """The first mismatches, in one line."""
        parts = []
        if self.wrong_shape:
            parts.append("shape mismatch: " + ", ".join(self.wrong_shape[:3]))
        if self.missing:
            parts.append(f"missing {len(self.missing)}: " + ", ".join(self.missing[:3]))
        if self.unexpected:
            parts.append(f"unexpected {len(self.unexpected)}: " + ", ".join(self.unexpected[:3]))
        return "; ".join(parts)


def _prefixes(keys, depth: int = 2) -> set[str]:
    out = {""}
    for k in keys:
        parts = k.split(".")
        for d in range(1, min(depth, len(parts) - 1) + 1):
            out.add(".".join(parts[:d]) + ".")
    return out


def _apply(own: dict[str, torch.Size], state: dict[str, torch.Tensor], strip: str, add: str) -> KeyFit:
    mapped, unexpected = {}, []
    for k, v in state.items():
        if k.startswith(strip):
            mapped[add + k[len(strip):]] = (k, v)
        else:
            unexpected.append(k)
    fit = KeyFit(state={}, strip=strip, add=add)
    for name, (saved, v) in mapped.items():
        if name not in own:
            unexpected.append(saved)
        elif tuple(v.shape) != tuple(own[name]):
            fit.wrong_shape.append(f"{saved} {tuple(v.shape)} vs {tuple(own[name])}")
        else:
            fit.state[name] = v
    fit.missing = [k for k in own if k not in fit.state and not any(w.startswith(k + " ") for w in fit.wrong_shape)]
    fit.unexpected = unexpected
    return fit


def fit_keys(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> KeyFit:
    """The prefix mapping of ``state`` onto ``model`` under which the most tensors fit.

    Ties go to the simplest mapping (keys as saved first).
    """
    own = {k: v.shape for k, v in model.state_dict().items()}
    best = _apply(own, state, "", "")
    if best.exact:
        return best
    strips, adds = sorted(_prefixes(state, 2)), sorted(_prefixes(own, 1))
    for strip in strips:
        for add in adds:
            if not (strip or add) or (strip and add and strip == add):
                continue
            fit = _apply(own, state, strip, add)
            if len(fit.state) > len(best.state) or (
                    len(fit.state) == len(best.state) and len(fit.unexpected) < len(best.unexpected)):
                best = fit
    return best


def load_weights(model: torch.nn.Module, path: str | Path, prefix: str = "", allow_partial: bool = False,
                 allow_missing: tuple[str, ...] = (), allow_unexpected: tuple[str, ...] = ()) -> KeyFit:
    """Load a checkpoint into ``model`` (or into its submodule ``prefix``), keys mapped by prefix and
    every shape checked.

    Args:
        model: the network.
        path: safetensors or weights-only torch file (any usual container).
        prefix: load into this submodule only (e.g. ``"backbone"`` for a torchvision state dict).
        allow_partial: load what fits and leave the rest as initialised.
        allow_missing: model key prefixes that may stay as initialised (a fresh head).
        allow_unexpected: checkpoint key prefixes that may be dropped (a training-only classifier).

    Returns:
        The :class:`KeyFit` used.

    Raises:
        CheckpointError: keys or shapes do not fit; the first mismatches and the best mapping are named.
    """
    state = read_state_dict(path)
    target = model.get_submodule(prefix) if prefix else model
    fit = fit_keys(target, state)
    if prefix:
        fit.unexpected = [k for k in fit.unexpected if not k.startswith(("fc.", "classifier.", "head."))]
    missing = [k for k in fit.missing if not k.startswith(allow_missing)] if allow_missing else fit.missing
    unexpected = [k for k in fit.unexpected if not k.startswith(allow_unexpected)] if allow_unexpected \
        else fit.unexpected
    wrong = [w for w in fit.wrong_shape if not w.startswith(allow_missing)] if allow_missing else fit.wrong_shape
    if not fit.state or ((missing or unexpected or wrong) and not allow_partial):
        hint = "" if fit.state else " (no tensor fits)"
        raise CheckpointError(f"weights {path} do not fit {type(target).__name__}{hint} ({fit.problems()}; "
                              f"best mapping: {fit.mapping()}, {len(fit.state)} of {len(state)} tensors fit); "
                              "were they saved from another architecture? --allow-partial loads what fits")
    target.load_state_dict(fit.state, strict=False)
    return fit
