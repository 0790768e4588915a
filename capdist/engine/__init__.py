"""Training loop shared by train, compress and prune: schedules, DDP, checkpoints, resume, logs."""

from .distributed import DistContext, init_distributed
from .trainer import TrainConfig, Trainer

__all__ = ["DistContext", "TrainConfig", "Trainer", "init_distributed"]
