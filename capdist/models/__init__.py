"""Model construction by name: torchvision backbones, capdist's tiny models, or ``pkg.mod:factory``."""

from .factory import build_model, parse_input_size

__all__ = ["build_model", "parse_input_size"]
