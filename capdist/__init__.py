"""capdist: Capacity Dynamic Distillation for smaller, faster image-retrieval models (arXiv 2303.09230).

``capdist.load(DIR)`` rebuilds a trained or compressed model from its run directory (no pickle).
"""

from .io.run_dir import load

__all__ = ["load"]
__version__ = "0.1.0"
