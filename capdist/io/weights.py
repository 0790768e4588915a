"""Weights in and out: safetensors (no pickle), or weights-only torch checkpoints.

Example:
    >>> import torch, tempfile, os
    >>> m = torch.nn.Linear(2, 2); p = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> save_weights(m, p); load_weights(torch.nn.Linear(2, 2), p)
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..errors import CheckpointError
from .atomic import atomic_write_bytes


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write the model's state dict as safetensors, atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata=metadata))


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a weights-only torch file (never unpickles code).

    Raises:
        CheckpointError: missing, corrupt or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot read weights {path}: {first} (corrupt, or a full pickled model: "
                              "save model.state_dict() instead)") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_weights(model: torch.nn.Module, path: str | Path, prefix: str = "") -> None:
    """Load weights into ``model`` (or into its submodule ``prefix``), all keys and shapes checked.

    A plain torchvision state dict loads into a RetrievalNet's backbone with
    ``prefix="backbone"`` (its classifier keys are ignored).

    Raises:
        CheckpointError: keys or shapes do not match; the first mismatches are named.
    """
    state = load_state(path)
    target = model.get_submodule(prefix) if prefix else model
    own = target.state_dict()
    if prefix:
        state = {k: v for k, v in state.items() if k in own}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append("shape mismatch: " + ", ".join(wrong[:3]))
        if missing:
            parts.append("missing: " + ", ".join(missing[:3]))
        if unexpected:
            parts.append("unexpected: " + ", ".join(unexpected[:3]))
        raise CheckpointError(f"weights {path} do not fit {type(target).__name__} ({'; '.join(parts)}); "
                              "were they saved from another architecture?")
    target.load_state_dict(state)
