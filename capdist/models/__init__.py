"""Model construction by name: torchvision backbones, capdist's tiny models, or ``pkg.mod:factory``."""

from .factory import build_model, parse_input_size
from .retrieval import RetrievalNet, embed

__all__ = ["RetrievalNet", "build_model", "embed", "parse_input_size"]
