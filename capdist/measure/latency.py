"""Latency: warm-up, then p50/p90 over repeats, with a per-layer breakdown (CDD, CVPR 2023).

Example:
    >>> import torch, torchvision
    >>> r = measure_latency(torchvision.models.resnet18(), (3, 64, 64), batch_size=1, repeats=5)
    >>> r.p50_ms <= r.p90_ms
    True
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass
class LatencyReport:
    """Wall-clock latency of one forward pass.

    Attributes:
        batch_size: images per forward pass.
        device: where it ran.
        threads: torch intra-op threads (CPU).
        p50_ms: median over repeats.
        p90_ms: 90th percentile over repeats.
        layers_ms: mean time per leaf module (from one profiled pass), slowest first.
    """

    batch_size: int
    device: str
    threads: int
    p50_ms: float
    p90_ms: float
    layers_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def layer_breakdown(model: nn.Module, x: torch.Tensor, top: int = 10) -> dict[str, float]:
    """Milliseconds per leaf module for one forward pass (hooks; indicative only)."""
    device = x.device
    starts: dict[str, float] = {}
    spent: dict[str, float] = {}
    hooks = []
    for name, m in model.named_modules():
        if list(m.children()) or not name:
            continue

        def pre(_m, _a, n=name):
            _sync(device)
            starts[n] = time.perf_counter()

        def post(_m, _a, _o, n=name):
            _sync(device)
            spent[n] = spent.get(n, 0.0) + (time.perf_counter() - starts[n]) * 1e3

        hooks += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return dict(sorted(spent.items(), key=lambda kv: -kv[1])[:top])


def measure_latency(model: nn.Module, input_size: tuple[int, ...], batch_size: int = 1,
                    repeats: int = 30, warmup: int = 5, device: str = "cpu",
                    threads: int | None = None, breakdown: bool = False) -> LatencyReport:
    """Time ``model`` on random inputs of ``(batch_size, *input_size)``.

    Args:
        model: the network (put in eval mode; its mode is restored).
        input_size: one image's shape, e.g. ``(3, 224, 224)``.
        batch_size: images per pass.
        repeats: timed passes after warm-up.
        warmup: untimed passes first.
        device: ``"cpu"`` or ``"cuda"``.
        threads: CPU threads to use (default: torch's current setting).
        breakdown: also time each leaf module once.
    """
    dev = torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    was = model.training
    model.eval().to(dev)
    x = torch.randn(batch_size, *input_size, device=dev)
    times = []
    try:
        with torch.no_grad():
            for _ in range(warmup):
                model(x)
            for _ in range(repeats):
                _sync(dev)
                t0 = time.perf_counter()
                model(x)
                _sync(dev)
                times.append((time.perf_counter() - t0) * 1e3)
        layers = layer_breakdown(model, x) if breakdown else {}
    finally:
        model.train(was)
    return LatencyReport(batch_size=batch_size, device=str(dev), threads=torch.get_num_threads(),
                         p50_ms=statistics.median(times), p90_ms=_percentile(times, 0.9),
                         layers_ms=layers)
