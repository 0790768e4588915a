"""The model zoos users come from, by the names they type: ``timm:NAME``, ``torchreid:NAME`` and
``fastreid:CONFIG.yml``; and dotted paths whose middle is an attribute a package re-exports.

A fast-reid ``Baseline`` trains through a dict of images and targets and returns its losses; its
eval forward normalises 0-255 pixels inside, in place. :class:`FastReIDNet` holds the same modules
and buffers (a fast-reid checkpoint loads as is) and returns the deployed embedding (the BNNeck
output) in both modes, normalising out of place.

Example:
    >>> net = ZOOS["fastreid"]("")(num_classes=751)  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import importlib

import torch
from torch import nn

from ..errors import UnsupportedModel


def import_path(dotted: str):
    """The object a dotted path names: the longest importable module, then attributes
    (``torchreid.models`` is an attribute that ``torchreid`` re-exports, not a module).

    Raises:
        ImportError: not even the first part imports.
    """
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name) or cut == 1:
                raise  # a module that exists failed inside, or nothing of the path imports
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


TORCHREID_DEFAULTS = {"loss": "triplet", "pretrained": False}


def _torchreid_factory(name: str):
    """torchreid's ``build_model`` for one architecture: ``loss='triplet'`` (its training output is
    ``(logits, features)``, so the features are the embedding in both modes) and no ImageNet download
    (the user's checkpoint holds the weights)."""
    try:
        models = import_path("torchreid.reid.models")
    except ImportError as exc:
        raise UnsupportedModel(f"torchreid is not usable ({exc}): pip install 'capdist[torchreid]'") from None
    known = sorted(getattr(models, "__model_factory", {}))
    if known and name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        raise UnsupportedModel(f"unknown torchreid model '{name}'" + (f"; close matches: {', '.join(close)}"
                                                                      if close else ""))

    def create(**kwargs):
        return models.build_model(name=name, **{**TORCHREID_DEFAULTS, **kwargs})

    return create


def _timm_factory(name: str):
    try:
        import timm
    except ImportError:
        raise UnsupportedModel("timm is not installed: pip install 'capdist[timm]'") from None
    if name not in timm.list_models():
        raise UnsupportedModel(f"unknown timm model '{name}'")

    def create(**kwargs):
        kwargs.pop("pretrained", None)
        return timm.create_model(name, pretrained=False, **kwargs)

    return create


class FastReIDNet(nn.Module):
    """A fast-reid ``Baseline``'s backbone, head and pixel statistics; ``forward`` takes 0-255 pixels
    (``--pixel-range 255``) and returns the embedding fast-reid deploys, in training mode too."""

    def __init__(self, baseline: nn.Module) -> None:
        super().__init__()
        self.backbone, self.heads = baseline.backbone, baseline.heads
        self.register_buffer("pixel_mean", baseline.pixel_mean.detach().clone(), persistent=False)
        self.register_buffer("pixel_std", baseline.pixel_std.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone((x - self.pixel_mean) / self.pixel_std)
        return self.heads.bottleneck(self.heads.pool_layer(features))[..., 0, 0]


def _fastreid_factory(config_file: str):
    """fast-reid's ``build_model`` for a config file (empty: its defaults, a ResNet-50 BoT baseline),
    without ImageNet download, on the CPU; ``num_classes`` sets ``MODEL.HEADS.NUM_CLASSES`` and any
    other keyword a config key (``MODEL.BACKBONE.DEPTH="18x"``)."""
    try:
        from fastreid.config import get_cfg
        from fastreid.modeling import build_model
    except ImportError as exc:
        raise UnsupportedModel(f"fast-reid is not usable ({exc}): pip install --no-deps fastreid") from None

    def create(num_classes: int | None = None, **overrides):
        cfg = get_cfg()
        if config_file:
            cfg.merge_from_file(config_file)
        cfg.merge_from_list(["MODEL.BACKBONE.PRETRAIN", False, "MODEL.DEVICE", "cpu"])
        if num_classes is not None or not cfg.MODEL.HEADS.NUM_CLASSES:
            cfg.merge_from_list(["MODEL.HEADS.NUM_CLASSES", num_classes or 1])
        for key, value in overrides.items():
            cfg.merge_from_list([key, value])
        return FastReIDNet(build_model(cfg))

    return create


ZOOS = {"timm": _timm_factory, "torchreid": _torchreid_factory, "fastreid": _fastreid_factory}
