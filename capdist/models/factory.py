"""Build a network from a name a user types (CDD, CVPR 2023 uses torchvision backbones).

Example:
    >>> build_model("resnet18", num_classes=10).fc.out_features
    10
"""

from __future__ import annotations

import importlib

import torchvision
from torch import nn

from ..errors import UnsupportedModel
from ..testing import tiny_models


def build_model(spec: str, **kwargs) -> nn.Module:
    """Build ``spec`` with random initialisation.

    Args:
        spec: a torchvision classification model name (``resnet18``), a capdist tiny
            model (``tiny_resnet``), or ``package.module:factory``.
        **kwargs: passed to the constructor (e.g. ``num_classes``).

    Raises:
        UnsupportedModel: unknown name, or a factory that fails.
    """
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UnsupportedModel(f"cannot import model factory '{spec}': {exc}") from None
        return factory(**kwargs)
    tiny = tiny_models()
    if spec in tiny:
        return tiny[spec](**kwargs)
    names = torchvision.models.list_models(module=torchvision.models)
    if spec not in names:
        close = [n for n in names if spec.lower()[:4] in n][:5]
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise UnsupportedModel(f"unknown model '{spec}' (a torchvision classification model, "
                               f"{', '.join(tiny)}, or package.module:factory){hint}")
    if kwargs.get("weights") not in (None, "None"):
        raise UnsupportedModel("capdist never downloads weights: build with random init and load "
                               "a local file with --weights")
    kwargs.pop("weights", None)
    extra = {"aux_logits": False, "init_weights": False} if spec in ("googlenet", "inception_v3") else {}
    return torchvision.models.get_model(spec, weights=None, **extra, **kwargs)


def parse_input_size(text: str) -> tuple[int, ...]:
    """Parse ``"3,224,224"`` into ``(3, 224, 224)``."""
    try:
        size = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UnsupportedModel(f"input size '{text}' must be comma-separated integers, "
                               "e.g. 3,224,224") from None
    if len(size) != 3 or min(size) < 1:
        raise UnsupportedModel(f"input size '{text}' must be C,H,W, e.g. 3,224,224")
    return size
