"""Tiny models and data for tests and quick demos (shipped, like timm's test models)."""

from .models import TinyMobileNet, TinyResNet, tiny_models

__all__ = ["TinyMobileNet", "TinyResNet", "tiny_models"]
