"""Helpers for the 2-process DDP test: a BatchNorm-free net and a worker (gloo, CPU).

BatchNorm statistics are per process under DDP, so only a BN-free network can match
single-process training exactly; that is what the test checks.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from ..data.retrieval import TensorImages
from ..engine import TrainConfig, Trainer, init_distributed


def plain_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 4))


def toy_set() -> TensorImages:
    gen = torch.Generator().manual_seed(0)
    return TensorImages(torch.randn(64, 3, 8, 8, generator=gen), torch.arange(64) % 4)


def objective(model, images, pids, step):
    return {"loss": F.cross_entropy(model(images), pids)}


def config(workers: int = 0) -> TrainConfig:
    """Plain shuffled batches with pad-and-crop and flips; ``workers`` loader processes."""
    return TrainConfig(epochs=2, batch_size=16, lr=0.1, instances=0, pad=1, flip=True, progress=False,
                       warmup_epochs=0, workers=workers)


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    model = plain_net()
    Trainer(model, objective, toy_set(), config(workers=1), os.path.join(out, "run"), ctx=ctx).fit()
    torch.save(model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()
