"""A frozen teacher: always in eval mode, run under no_grad, optionally cached per sample.

Example:
    >>> import torch
    >>> t = Teacher(torch.nn.Linear(3, 2))
    >>> t.train().training
    False
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class Teacher(nn.Module):
    """Wraps a trained model so distillation can never update or re-normalise it.

    Args:
        model: the trained teacher.
        cache: keep outputs per sample key (use only with inputs that do not change
            between epochs, e.g. the un-augmented image).
    """

    def __init__(self, model: nn.Module, cache: bool = False) -> None:
        super().__init__()
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.use_cache = cache
        self._cache: dict[int, dict[str, torch.Tensor]] = {}

    def train(self, mode: bool = True) -> Teacher:
        """Stay in eval mode whatever the surrounding module does."""
        self.training = False
        self.model.eval()
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor, keys: torch.Tensor | None = None):
        if not (self.use_cache and keys is not None):
            return self.model(x)
        keys_l = [int(k) for k in keys]
        if all(k in self._cache for k in keys_l):
            first = self._cache[keys_l[0]]
            return {name: torch.stack([self._cache[k][name] for k in keys_l]).to(x.device) for name in first}
        out = self.model(x)
        if isinstance(out, dict):
            for i, k in enumerate(keys_l):
                self._cache[k] = {n: v[i].detach().cpu() for n, v in out.items()}
        return out

    def save_cache(self, path: str | Path) -> None:
        """Write the cache as safetensors (``KEY/NAME`` tensors)."""
        flat = {f"{k}/{n}": v.contiguous() for k, d in self._cache.items() for n, v in d.items()}
        save_file(flat, str(path))

    def load_cache(self, path: str | Path) -> None:
        """Read a cache written by :meth:`save_cache`."""
        for key, value in load_file(str(path)).items():
            k, _, name = key.partition("/")
            self._cache.setdefault(int(k), {})[name] = value
