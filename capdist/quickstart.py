"""A complete compactor run on a small dataset: train, compact with schedule A, cut.

Used by the tests (the whole compactor API on real images in under a minute on a CPU) and as a
worked example of plugging compactors into a plain training loop.

Example:
    >>> result = compact_toy(epochs=1, compact_epochs=1)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .compactor import CompactorConfig, NormSchedule, attach, surgery
from .compactor.cost import fvcore_by_module
from .data import ArraySplit
from .models.tiny import tiny_models


@dataclass
class ToyResult:
    """Accuracy and cost before and after compaction."""

    accuracy_before: float
    accuracy_masked: float
    accuracy_after: float
    flops_before: int
    flops_after: int
    target: float
    max_abs_diff: float
    rel_diff: float
    max_masked_row_norm: float
    threshold: float
    seconds: float
    model: nn.Module


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    """Top-1 accuracy in eval mode."""
    was = model.training
    model.eval()
    with torch.no_grad():
        hits = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
                   for i in range(0, len(y), batch))
    model.train(was)
    return hits / len(y)


def _epochs(model: nn.Module, data: ArraySplit, epochs: int, optimizer, batch: int,
            gen: torch.Generator, after_backward=None, after_step=None) -> None:
    steps = epochs * math.ceil(len(data.train_y) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(data.train_y), generator=gen)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if after_backward:
                after_backward()
            optimizer.step()
            sched.step()
            if after_step:
                after_step()


def compact_toy(data: ArraySplit, model_name: str = "tiny_resnet", target: float = 0.35,
                epochs: int = 6, compact_epochs: int = 8, scope: str = "all", round_to: int = 1,
                penalty: float = 0.02, threshold: float = 1e-4, batch: int = 32, seed: int = 0) -> ToyResult:
    """Train a tiny CNN, compact it to ``target`` of its FLOPs, and cut it.

    Args:
        data: images and labels (digits or Fashion-MNIST).
        model_name: a model from :mod:`capdist.models.tiny`.
        target: FLOPs after surgery as a fraction of the original.
        epochs: plain training epochs.
        compact_epochs: epochs with compactors, penalty, resetting and schedule A.
        scope: compactor scope.
        round_to: width alignment.
        penalty: group-lasso strength (large, because the run is short).
        threshold: surgery drops rows below this norm (the short run ends with masked rows
            oscillating around zero at about lr * penalty).
        batch: batch size.
        seed: seeds initialisation and shuffling.
    """
    start = time.time()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = tiny_models()[model_name](num_classes=data.num_classes,
                                      in_channels=data.image_shape[0])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    _epochs(model, data, epochs, opt, batch, gen)
    acc_before = accuracy(model, data.test_x, data.test_y)
    example = data.train_x[:2]
    cm = attach(model, example, CompactorConfig(scope=scope, penalty=penalty, round_to=round_to,
                                                threshold=threshold))
    steps_per_epoch = math.ceil(len(data.train_y) / batch)
    units = sum(g.spec.period for g in cm.groups)
    interval = 2
    schedule = NormSchedule(cm, target=target, warmup=steps_per_epoch, interval=interval,
                            granularity=max(1, math.ceil(2 * units * interval / steps_per_epoch)))
    opt = torch.optim.SGD(cm.param_groups(lr=0.05, compactor_momentum=0.9), lr=0.05)
    cm.register_step_hook(opt)
    _epochs(model, data, compact_epochs, opt, batch, gen, after_step=schedule.step)
    acc_masked = _masked_accuracy(cm, data)
    masked_norm = max((float(g.row_norms()[~g.mask].max()) for g in cm.groups
                       if (~g.mask).any()), default=0.0)
    res = surgery(cm, data.test_x[:256])
    return ToyResult(
        accuracy_before=acc_before, accuracy_masked=acc_masked,
        accuracy_after=accuracy(res.model, data.test_x, data.test_y),
        flops_before=cm.original_flops,
        flops_after=int(fvcore_by_module(res.model, (example,))[""]), target=target,
        max_abs_diff=res.max_abs_diff, rel_diff=res.rel_diff,
        max_masked_row_norm=masked_norm, threshold=cm.config.threshold, seconds=time.time() - start, model=res.model)


def _masked_accuracy(cm, data: ArraySplit) -> float:
    """Accuracy of the trained model with masked compactor rows zeroed (restored after)."""
    saved = [c.weight.detach().clone() for c in cm.compactors()]
    with torch.no_grad():
        for c in cm.compactors():
            c.weight.mul_(c.mask.view(-1, *([1] * (c.weight.dim() - 1))).to(c.weight.dtype))
    acc = accuracy(cm.model, data.test_x, data.test_y)
    with torch.no_grad():
        for c, w in zip(cm.compactors(), saved, strict=True):
            c.weight.copy_(w)
    return acc
