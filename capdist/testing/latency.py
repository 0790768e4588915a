"""Stand-ins for a device's timer, for tests of the latency table and the side-by-side timing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def multiply_adds(module: nn.Module, x: torch.Tensor, per_channel: Callable[[nn.Module], float] | None = None) -> float:
    """An analytic 'latency' in ms: multiply-adds of every conv and linear layer one pass of ``x`` runs
    (x 1e-3), plus ``per_channel(layer)`` ms per output channel (a cost FLOPs do not see).

    Args:
        module: the network or layer to "time" (compactors, which carry a ``mask``, are not counted).
        x: its input.
        per_channel: extra milliseconds per output channel of a layer.
    """
    total = [0.0]

    def hook(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if isinstance(m, nn.Conv2d):
            macs = out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            channels = m.out_channels
        else:
            macs = out.numel() * m.in_features
            channels = m.out_features
        total[0] += macs * 1e-3 + (per_channel(m) if per_channel else 0.0) * channels

    hooks = [m.register_forward_hook(hook) for m in module.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear)) and not hasattr(m, "mask")]
    with torch.no_grad():
        module.eval()(x)
    for h in hooks:
        h.remove()
    return total[0]


class _FunctionTiming:
    def __init__(self, timer: FunctionTimer, module: nn.Module, x: torch.Tensor) -> None:
        self.timer, self.module, self.x = timer, module, x

    def mean_ms(self, passes: int) -> float:
        self.timer.calls.append(("mean", self.module))
        return self.timer.fn(self.module, self.x)

    def fastest_ms(self, min_run_time: float) -> float:
        self.timer.calls.append(("fastest", self.module))
        return self.timer.fn(self.module, self.x)

    def samples_ms(self, count: int) -> list[float]:
        self.timer.calls.append(("samples", self.module))
        return [self.timer.fn(self.module, self.x)] * count


class FunctionTimer:
    """A :class:`~capdist.measure.timer.Timer` whose every figure is ``fn(module, x)`` milliseconds.

    Args:
        fn: the "latency" of a module on an input (e.g. :func:`multiply_adds`).
        name: the timer's name (part of the latency table's cache key).

    Attributes:
        calls: ``("mean" | "fastest", module)`` for every figure asked for, in order.
    """

    def __init__(self, fn: Callable[[nn.Module, torch.Tensor], float], name: str = "function") -> None:
        self.fn, self.name = fn, name
        self.calls: list[tuple[str, nn.Module]] = []

    def describe(self, x: torch.Tensor) -> dict[str, Any]:
        return {"runtime": self.name, "threads": torch.get_num_threads(), "batch": int(x.shape[0]),
                "precision": str(x.dtype).removeprefix("torch.")}

    def prepare(self, module: nn.Module, x: torch.Tensor) -> _FunctionTiming:
        return _FunctionTiming(self, module, x)
