"""A user's own retrieval model, any ``nn.Module``, seen through capdist's interface.

capdist's engine reads a model's output as a dict with ``embedding`` (what retrieval
compares) and, for its own :class:`RetrievalNet`, ``feature`` and ``logits``. A user's module
returns a tensor, a tuple or a dict; :class:`RetrievalView` picks the embedding out of it
(``output``: a dict key or a tuple index) and hands everything else through untouched. The
user's module stays a child called ``model``: its class, its weights and its forward are
unchanged, and :func:`unwrapped` gives it back.

torchreid's models return ``(logits, features)`` in training mode (``loss="triplet"``) and
the features alone in eval mode: ``output=1`` picks the features in training, and a bare
tensor is always taken as the embedding. The user's own logits are not used: their
classes are the user's training identities, not the data capdist trains on, so CE goes
through a temporary classifier instead.

Example:
    >>> import torch
    >>> view = RetrievalView(torch.nn.Linear(4, 3))
    >>> view(torch.randn(2, 4))["embedding"].shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UnsupportedModel


def parse_output_selector(text: str | int | None) -> str | int | None:
    """``"1"`` -> 1 (a tuple index), ``"feat"`` -> ``"feat"`` (a dict key), ``None`` stays."""
    if text is None or isinstance(text, int):
        return text
    text = str(text).strip()
    if not text:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def select_embedding(out, output: str | int | None) -> torch.Tensor:
    """The embedding inside a module's output.

    Raises:
        UnsupportedModel: the output has no tensor where ``output`` points.
    """
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        key = output if output is not None else "embedding"
        if key in out and isinstance(out[key], torch.Tensor):
            return out[key]
        raise UnsupportedModel(f"the model returns a dict with keys {sorted(map(str, out))}; name the "
                               "embedding with --embedding-output KEY")
    if isinstance(out, (tuple, list)):
        if output is None:
            raise UnsupportedModel(f"the model returns a {type(out).__name__} of {len(out)}; name the "
                                   "embedding with --embedding-output INDEX")
        if isinstance(output, int) and -len(out) <= output < len(out) and isinstance(out[output], torch.Tensor):
            return out[output]
        raise UnsupportedModel(f"--embedding-output {output} does not point at a tensor in the model's "
                               f"{type(out).__name__} of {len(out)}")
    raise UnsupportedModel(f"the model returns {type(out).__name__}, not a tensor, tuple or dict")


class RetrievalView(nn.Module):
    """Any module, presented as ``{"embedding": ..., "feature": ...}``.

    Args:
        model: the user's module (kept as the child ``model``).
        output: dict key or tuple index of the embedding in the module's output.
        source: how the module was made (recorded in run directories so it can be rebuilt).
    """

    def __init__(self, model: nn.Module, output: str | int | None = None, source: dict | None = None) -> None:
        super().__init__()
        self.model = model
        self.output = parse_output_selector(output)
        self.source = source or {}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = select_embedding(self.model(x), self.output)
        if emb.dim() != 2:
            emb = emb.flatten(1)
        return {"embedding": emb, "feature": emb}


def unwrapped(model: nn.Module) -> nn.Module:
    """The module compactors and pruners work on: the user's own inside a view, else the model."""
    return model.model if isinstance(model, RetrievalView) else model


def wrapped_like(reference: nn.Module, module: nn.Module) -> nn.Module:
    """``module`` presented the way ``reference`` is (in a view when ``reference`` is one)."""
    return RetrievalView(module, reference.output, reference.source) if isinstance(reference, RetrievalView) else module


def has_logits(model: nn.Module) -> bool:
    """Whether the model carries its own ID classifier (capdist's RetrievalNet)."""
    return not isinstance(model, RetrievalView) and hasattr(model, "classifier")
