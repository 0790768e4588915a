"""Latency of one model: warm-up, then p50/p90 over single passes, with a per-layer breakdown.

Every figure comes from one :class:`~capdist.measure.timer.Timer` (default: eager PyTorch through
``torch.utils.benchmark``).

Example:
    >>> import torch, torchvision
    >>> r = measure_latency(torchvision.models.resnet18(), (3, 64, 64), batch_size=1, repeats=5)
    >>> r.p50_ms <= r.p90_ms
    True
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .timer import Timer, get_timer, percentile


@dataclass
class LatencyReport:
    """Wall-clock latency of one forward pass.

    Attributes:
        batch_size: images per forward pass.
        device: where it ran.
        threads: CPU intra-op threads while timing.
        p50_ms: median over repeats.
        p90_ms: 90th percentile over repeats.
        layers_ms: time per leaf module, each timed alone, slowest first (see :func:`layer_breakdown`).
        runtime: the timing back-end's name.
    """

    batch_size: int
    device: str
    threads: int
    p50_ms: float
    p90_ms: float
    layers_ms: dict[str, float] = field(default_factory=dict)
    runtime: str = "eager"

    def to_dict(self) -> dict:
        return asdict(self)


def layer_breakdown(model: nn.Module, x: torch.Tensor, top: int = 10, timer: Timer | str | None = None,
                    passes: int = 3) -> dict[str, float]:
    """Milliseconds per leaf module: each leaf timed alone (mean of ``passes`` passes) on every input it
    takes in one pass of ``x``, summed over its calls; the ``top`` slowest. Indicative only: a layer
    alone misses what it shares with its neighbours (caches, fusion), and leaves called with anything
    but one tensor are left out."""
    timer = get_timer(timer)
    inputs: dict[str, list[torch.Tensor]] = {}
    leaves = {name: m for name, m in model.named_modules() if name and not list(m.children())}

    def record(_m: nn.Module, args: tuple, name: str) -> None:
        if len(args) == 1 and isinstance(args[0], torch.Tensor):
            inputs.setdefault(name, []).append(args[0].detach())

    hooks = [m.register_forward_pre_hook(lambda m, a, n=name: record(m, a, n)) for name, m in leaves.items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    spent = {name: sum(timer.prepare(leaves[name], t).mean_ms(passes) for t in tensors)
             for name, tensors in inputs.items()}
    return dict(sorted(spent.items(), key=lambda kv: -kv[1])[:top])


def measure_latency(model: nn.Module, input_size: tuple[int, ...], batch_size: int = 1,
                    repeats: int = 30, warmup: int = 5, device: str = "cpu",
                    threads: int | None = None, breakdown: bool = False,
                    timer: Timer | str | None = None) -> LatencyReport:
    """Time ``model`` on random inputs of ``(batch_size, *input_size)``, one pass per sample.

    Args:
        model: the network (put in eval mode; its mode is restored).
        input_size: one image's shape, e.g. ``(3, 224, 224)``.
        batch_size: images per pass.
        repeats: timed passes after warm-up.
        warmup: untimed passes first.
        device: ``"cpu"`` or ``"cuda"``.
        threads: CPU threads while timing (default: torch's current setting); used where ``timer``
            is a name or None.
        breakdown: also time each leaf module (:func:`layer_breakdown`).
        timer: the timing back-end, or its name in :data:`~capdist.measure.timer.TIMERS` (default: eager).
    """
    dev = torch.device(device)
    timer = get_timer(timer, threads=threads)
    was = model.training
    model.eval().to(dev)
    x = torch.randn(batch_size, *input_size, device=dev)
    try:
        timing = timer.prepare(model, x)
        if warmup:
            timing.mean_ms(warmup)
        times = timing.samples_ms(repeats)
        layers = layer_breakdown(model, x, timer=timer) if breakdown else {}
    finally:
        model.train(was)
    described = timer.describe(x)
    return LatencyReport(batch_size=batch_size, device=str(dev), threads=described["threads"],
                         p50_ms=statistics.median(times), p90_ms=percentile(times, 0.9), layers_ms=layers,
                         runtime=described["runtime"])
