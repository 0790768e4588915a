"""Latency of several models measured side by side: interleaved rounds on one device, medians,
spread and per-round ratios to a reference (every ratio comes from the same moment of the same
machine).

Each round times every model once, in an order shuffled per round, with one
:class:`~capdist.measure.timer.Timer` (default: eager PyTorch through ``torch.utils.benchmark``,
which synchronises CUDA); a load spike that slows one round
slows the reference with it, so the ratio taken round by round is what a report can trust.
Every model is timed as it is deployed: a copy with each BatchNorm folded into the convolution
before it (as surgery leaves a compressed model and as ONNX / TensorRT exports do), where
``torch.fx`` can trace it.

Example:
    >>> import torch
    >>> nets = {"a": torch.nn.Conv2d(3, 8, 3), "b": torch.nn.Conv2d(3, 4, 3)}
    >>> t = time_side_by_side(nets, (3, 16, 16), batch_sizes=(1,), rounds=2, repeats=2, reference="a")
    >>> t["a"]["b1"]["ratio"]
    1.0
"""

from __future__ import annotations

import copy
import logging
import random
import statistics

import torch
from torch import nn

from .timer import Timer, Timing, get_timer, percentile


def _fold(module: nn.Module) -> nn.Module:
    """``module`` with its BatchNorms folded by ``torch.fx``'s ``fuse`` (in place); where ``torch.fx``
    cannot trace a module (a user's wrapper, data-dependent control flow), its children instead."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module, inplace=True)
    except Exception:  # noqa: BLE001 - any tracing failure: fold what lies below it
        for name, child in list(module.named_children()):
            if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in child.modules()):
                setattr(module, name, _fold(child))
        return module


def _spatial_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)) for m in model.modules())


def deployed(model: nn.Module) -> tuple[nn.Module, bool]:
    """A copy of ``model`` in eval mode with every BatchNorm that follows a convolution folded into
    it (``torch.fx.experimental.optimization.fuse``, on the largest modules ``torch.fx`` can trace),
    and whether no 2-D/3-D BatchNorm is left (a BatchNorm1d neck after pooling has no convolution to
    fold into). A model without BatchNorms comes back as itself."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model, True
    plain = _fold(copy.deepcopy(model).eval())
    left = _spatial_batchnorms(plain)
    if left:
        logging.getLogger("capdist").debug("%d BatchNorms not folded for timing", left)
    return plain, left == 0


def time_side_by_side(models: dict[str, nn.Module], input_size: tuple[int, ...], batch_sizes: tuple[int, ...] = (1, 32),
                      rounds: int = 5, repeats: int = 5, warmup: int = 2, device: str = "cpu",
                      reference: str | None = None, seed: int = 0,
                      input_sizes: dict[str, tuple[int, ...]] | None = None,
                      fold_batchnorm: bool = True, timer: Timer | str | None = None) -> dict[str, dict]:
    """Median latency of every model, timed in interleaved rounds.

    Args:
        models: name -> module (timed in eval mode on ``device``; modes are restored, and with
            ``fold_batchnorm`` a model with BatchNorms is timed as a folded copy).
        input_size: C, H, W of one image.
        batch_sizes: batches to time.
        rounds: interleaved rounds; each gives one mean-of-``repeats`` figure per model.
        repeats: passes per model per round.
        warmup: untimed passes per model before the first round.
        device: where to time.
        reference: the model every ratio is taken against (default: the first).
        seed: shuffles the order of models within each round.
        input_sizes: per-model C, H, W where a model takes another size than ``input_size``.
        fold_batchnorm: time :func:`deployed` copies of the models that have BatchNorms.
        timer: the timing back-end, or its name in :data:`~capdist.measure.timer.TIMERS` (default: eager).

    Returns:
        ``{name: {"device", "threads", "runtime", "precision", "input_size", "rounds", "bn_folded",
        "b<N>": {"median_ms", "p10_ms", "p90_ms", "ratio", "ratio_min", "ratio_max"}}}``.
    """
    dev = torch.device(device)
    reference = reference or next(iter(models))
    sizes = {name: tuple((input_sizes or {}).get(name, input_size)) for name in models}
    timer = get_timer(timer)
    folded = {name: True for name in models}
    if fold_batchnorm:
        copies = {name: deployed(m) for name, m in models.items()}
        models, folded = {n: c[0] for n, c in copies.items()}, {n: c[1] for n, c in copies.items()}
    was = {name: m.training for name, m in models.items()}
    timings: dict[tuple[str, int], Timing] = {}
    described: dict = {}
    try:
        for name, model in models.items():
            model.eval().to(dev)
            for b in batch_sizes:
                x = torch.randn(b, *sizes[name], device=dev)
                described = described or timer.describe(x)
                timings[name, b] = timer.prepare(model, x)
                timings[name, b].mean_ms(max(1, warmup))
        rng = random.Random(seed)
        times: dict[tuple[str, int], list[float]] = {key: [] for key in timings}
        for _ in range(rounds):
            order = list(models)
            rng.shuffle(order)
            for b in batch_sizes:
                for name in order:
                    times[name, b].append(timings[name, b].mean_ms(repeats))
    finally:
        for name, model in models.items():
            model.train(was[name])
    result = {}
    for name in models:
        row: dict = {"device": str(dev), "threads": described["threads"], "runtime": described["runtime"],
                     "precision": described["precision"],
                     "input_size": list(sizes[name]), "rounds": rounds,
                     "bn_folded": folded[name] if fold_batchnorm else False}
        for b in batch_sizes:
            ms = times[name, b]
            ratios = [m / r for m, r in zip(ms, times[reference, b], strict=True)]
            row[f"b{b}"] = {"median_ms": statistics.median(ms), "p10_ms": percentile(ms, 0.1),
                            "p90_ms": percentile(ms, 0.9), "ratio": statistics.median(ratios),
                            "ratio_min": min(ratios), "ratio_max": max(ratios)}
        result[name] = row
    return result
