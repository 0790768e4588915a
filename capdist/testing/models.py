"""The tiny models of :mod:`capdist.models.tiny`, re-exported for tests and demos."""

from ..models.tiny import TinyMobileNet, TinyResNet, tiny_models

__all__ = ["TinyMobileNet", "TinyResNet", "tiny_models"]
