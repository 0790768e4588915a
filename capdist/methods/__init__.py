"""Compression methods, one file each: a typed config and one verb.

| method | config | verb |
|---|---|---|
| Capacity Dynamic Distillation | :class:`CompressConfig` | :func:`compress` |
| baseline pruning + fine-tuning | :class:`PruneConfig` | :func:`prune` |
| a retrieval teacher | :class:`~capdist.engine.TrainConfig` | :func:`train_retrieval` |
"""

from .cdd import compress
from .common import ModelSource, RunOptions
from .prune import PruneConfig, prune
from .settings import CompressConfig
from .teacher import train_retrieval

__all__ = ["CompressConfig", "ModelSource", "PruneConfig", "RunOptions", "compress", "prune", "train_retrieval"]
