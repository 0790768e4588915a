"""Retrieval network: a backbone, an embedding head (optional projection and BNNeck), an ID
classifier (the BoT re-ID baseline).

Example:
    >>> import torch
    >>> net = RetrievalNet("resnet18", num_classes=10)
    >>> out = net(torch.randn(2, 3, 32, 32))
    >>> out["embedding"].shape, out["logits"].shape
    (torch.Size([2, 512]), torch.Size([2, 10]))
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UnsupportedModel
from .factory import build_model


def _strip_classifier(backbone: nn.Module) -> int:
    """Replace the backbone's last Linear with Identity; return its input width."""
    last_name, last = None, None
    for name, module in backbone.named_modules():
        if isinstance(module, nn.Linear):
            last_name, last = name, module
    if last is None:
        raise UnsupportedModel(f"{type(backbone).__name__} has no Linear classifier to replace with "
                               "an embedding head")
    parent_name, _, child = last_name.rpartition(".")
    parent = backbone.get_submodule(parent_name) if parent_name else backbone
    setattr(parent, child, nn.Identity())
    return last.in_features


class RetrievalNet(nn.Module):
    """Backbone + embedding head + ID classifier.

    ``forward`` returns a dict: ``feature`` (pooled backbone output), ``embedding`` (what
    retrieval compares: the BNNeck output when ``bnneck``) and ``logits``.

    Args:
        backbone: a torchvision classification model name or ``package.module:factory``.
        num_classes: identities in the training set.
        embed_dim: add a linear projection to this width (None: keep the backbone's).
        bnneck: add the BNNeck (BatchNorm1d before the classifier, BoT re-ID baseline).
        backbone_kwargs: passed to the backbone's constructor (e.g. ``{"width": 8}``).
    """

    def __init__(self, backbone: str, num_classes: int, embed_dim: int | None = None,
                 bnneck: bool = True, backbone_kwargs: dict | None = None) -> None:
        super().__init__()
        self.spec = {"backbone": backbone, "num_classes": num_classes, "embed_dim": embed_dim,
                     "bnneck": bnneck, "backbone_kwargs": backbone_kwargs or {}}
        self.backbone = build_model(backbone, **(backbone_kwargs or {}))
        width = _strip_classifier(self.backbone)
        self.projection = nn.Linear(width, embed_dim, bias=False) if embed_dim else None
        dim = embed_dim or width
        self.neck = nn.BatchNorm1d(dim) if bnneck else None
        if self.neck is not None:
            self.neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        self.embed_dim = dim

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feature = self.backbone(x)
        if self.projection is not None:
            feature = self.projection(feature)
        embedding = self.neck(feature) if self.neck is not None else feature
        return {"feature": feature, "embedding": embedding, "logits": self.classifier(embedding)}


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The retrieval embedding of ``x`` from a RetrievalNet or any module returning a tensor/dict."""
    out = model(x)
    return out["embedding"] if isinstance(out, dict) else out
