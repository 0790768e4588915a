"""Read the checkpoints users actually have, never unpickling code (trained with
torchreid, fast-reid, timm or a user's own loop).

Safetensors files are read directly. Torch files are always read with ``weights_only=True``;
the only extra globals allowed are the harmless ones real checkpoints carry beside the weights:
numpy scalars and dtypes (torchreid stores ``rank1`` and ``mAP`` as numpy floats) and
``argparse.Namespace`` (timm stores its training arguments). The state dict is then found
under the usual container keys and stripped of wrapper prefixes (DDP's ``module.``,
``torch.compile``'s ``_orig_mod.``).

Example:
    >>> import torch, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "ckpt.pth")
    >>> torch.save({"state_dict": {"module.fc.weight": torch.ones(2, 2)}, "epoch": 3}, p)
    >>> sorted(read_state_dict(p))
    ['fc.weight']
"""

from __future__ import annotations

import argparse
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import CheckpointError

CONTAINER_KEYS = ("state_dict", "model", "module", "net", "model_state_dict", "ema", "model_ema",
                  "state_dict_ema")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _safe_globals() -> list:
    """Globals a weights-only load may construct: numpy scalars and dtypes, argparse.Namespace."""
    allowed: list = [argparse.Namespace, np.dtype]
    core = np._core if hasattr(np, "_core") else np.core
    scalar = core.multiarray.scalar
    allowed += [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return allowed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("Weights only load failed", "(1)", "(2)", "In PyTorch")):
            return line[:160]
    return type(exc).__name__


def read_checkpoint(path: str | Path) -> object:
    """The raw object stored in ``path`` (safetensors: a dict of tensors).

    Raises:
        CheckpointError: missing, unreadable, or holding anything a weights-only load refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        with warnings.catch_warnings(), torch.serialization.safe_globals(_safe_globals()):
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError,
            AttributeError, TypeError, ImportError) as exc:
        raise CheckpointError(f"cannot read weights {path}: {_first_line(exc)} (corrupt, or it holds "
                              "code or objects beyond tensors: save model.state_dict() instead)") from None


def _is_state(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def find_state_dict(obj: object, depth: int = 0) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict inside a checkpoint object and the key path it was under.

    Tensors stored beside non-tensors (a torchreid ``state_dict`` is pure; a bare dict with
    ``epoch`` next to tensors is not) are taken as the state dict when no container key holds one.
    """
    if _is_state(obj):
        return obj, ""
    if isinstance(obj, dict) and depth < 3:
        for key in CONTAINER_KEYS:
            if key in obj:
                try:
                    state, where = find_state_dict(obj[key], depth + 1)
                except CheckpointError:
                    continue
                return state, key + ("/" + where if where else "")
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors, ""
    raise CheckpointError("the file holds no state dict of tensors (looked under "
                          f"{', '.join(CONTAINER_KEYS)})")


def strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DDP's ``module.`` and torch.compile's ``_orig_mod.`` prefixes (repeatedly)."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A clean state dict from a safetensors file or any weights-only torch checkpoint.

    Raises:
        CheckpointError: the file cannot be read safely or holds no tensors.
    """
    try:
        state, _ = find_state_dict(read_checkpoint(path))
    except CheckpointError as exc:
        if str(exc).startswith("the file"):
            raise CheckpointError(f"{path}: {exc}") from None
        raise
    return strip_wrappers(state)
