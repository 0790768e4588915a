"""capdist: Capacity Dynamic Distillation for smaller, faster image-retrieval models.

``capdist.load(DIR)`` rebuilds a trained or compressed model from its run directory (no pickle);
``capdist.compress(model, train_data, ...)`` and ``capdist.prune(...)`` compress a module in hand.
"""

__all__ = ["Compressed", "compress", "load", "prune"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load":
        from .io.run_dir import load

        return load
    if name in ("Compressed", "compress", "prune"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'capdist' has no attribute '{name}'")
