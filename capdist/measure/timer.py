"""The one timer every latency figure goes through, and the table of timing back-ends by name.

A back-end is a :class:`Timer`: it prepares a model for one input (for a compiled runtime: export
and build a session, once) and returns a :class:`Timing` that gives the two figures the measurements
need: the mean of a number of passes (one sample of an interleaved round, see
:func:`~capdist.measure.timing.time_side_by_side`) and the fastest block of a blocked run (one entry
of the latency table). :data:`TIMERS` maps a name to the class; a new runtime is one class whose
constructor takes a ``threads`` keyword, plus one row there.

Example:
    >>> import torch
    >>> timer = get_timer("eager", threads=1)
    >>> x = torch.randn(1, 3, 8, 8)
    >>> timer.prepare(torch.nn.Conv2d(3, 4, 3).eval(), x).mean_ms(2) > 0
    True
    >>> timer.describe(x)
    {'runtime': 'eager', 'threads': 1, 'batch': 1, 'precision': 'float32'}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from ..errors import CapdistError
from .call_timing import BenchmarkTiming, benchmark_module

DEFAULT_TIMER = "eager"


class UnknownTimer(CapdistError, ValueError):
    """A timing back-end name that is not in :data:`TIMERS`."""


class Timing(Protocol):
    """One model prepared for one input by a :class:`Timer`."""

    def mean_ms(self, passes: int) -> float:
        """Milliseconds per pass, the mean of ``passes`` passes timed together."""
        ...

    def fastest_ms(self, min_run_time: float) -> float:
        """Milliseconds per pass in the fastest of the blocks run for ``min_run_time`` seconds in all."""
        ...

    def samples_ms(self, count: int) -> list[float]:
        """Milliseconds of each of ``count`` single passes run back to back (after a warm-up)."""
        ...


class Timer(Protocol):
    """A timing back-end: a runtime with its settings.

    Attributes:
        name: the back-end's row in :data:`TIMERS` (reports and cache keys carry it).
    """

    name: str

    def describe(self, x: torch.Tensor) -> dict[str, Any]:
        """What a figure timed on ``x`` was measured with: ``runtime``, ``threads``, ``batch``, ``precision``."""
        ...

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Timing:
        """``module`` (in eval mode, on ``x``'s device) made ready to be timed on ``x``, without gradients."""
        ...


class _EagerTiming(BenchmarkTiming):
    def __init__(self, module: nn.Module, x: torch.Tensor, threads: int) -> None:
        super().__init__(benchmark_module().Timer("with torch.no_grad():\n    module(x)",
                                                  globals={"module": module, "x": x, "torch": torch},
                                                  num_threads=threads))

    def samples_ms(self, count: int) -> list[float]:
        # one ``timeit`` per sample would add its own two warm-up passes to every sample
        single = getattr(self._timer, "_timeit", None)
        if single is None:
            return [self._timer.timeit(1).mean * 1e3 for _ in range(count)]
        from torch.utils.benchmark.utils import common

        with common.set_torch_threads(self._timer._task_spec.num_threads):
            return [single(number=1) * 1e3 for _ in range(count)]


class EagerTimer:
    """PyTorch eager mode, timed by ``torch.utils.benchmark.Timer`` (which synchronises CUDA).

    Args:
        threads: CPU intra-op threads while timing (default: torch's setting when prepared).
    """

    name = "eager"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def _threads(self) -> int:
        return self.threads or torch.get_num_threads()

    def describe(self, x: torch.Tensor) -> dict[str, Any]:
        return {"runtime": self.name, "threads": self._threads(), "batch": int(x.shape[0]),
                "precision": str(x.dtype).removeprefix("torch.")}

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Timing:
        return _EagerTiming(module, x, self._threads())


def _onnxruntime(threads: int | None = None) -> Timer:
    from .runtimes import OnnxRuntimeTimer

    return OnnxRuntimeTimer(threads=threads)


def _openvino(threads: int | None = None) -> Timer:
    from .runtimes import OpenVinoTimer

    return OpenVinoTimer(threads=threads)


def _onnxruntime_gpu(provider: str) -> Callable[..., Timer]:
    def build(threads: int | None = None) -> Timer:
        from .runtimes import OnnxRuntimeGpuTimer

        return OnnxRuntimeGpuTimer(provider, threads=threads)

    return build


TIMERS: dict[str, Callable[..., Timer]] = {"eager": EagerTimer, "onnxruntime": _onnxruntime, "openvino": _openvino,
                                           "onnxruntime-cuda": _onnxruntime_gpu("cuda"),
                                           "onnxruntime-tensorrt": _onnxruntime_gpu("tensorrt")}
GPU_TIMERS = ("onnxruntime-cuda", "onnxruntime-tensorrt")  # time on a CUDA GPU; the other compiled ones on the CPU


def get_timer(timer: Timer | str | None = None, threads: int | None = None) -> Timer:
    """The timer to use: ``timer`` itself, the back-end of that name in :data:`TIMERS` (built with
    ``threads``), or :data:`DEFAULT_TIMER` for None.

    Raises:
        UnknownTimer: a name that is not in :data:`TIMERS`.
    """
    if timer is not None and not isinstance(timer, str):
        return timer
    name = timer or DEFAULT_TIMER
    if name not in TIMERS:
        raise UnknownTimer(f"unknown timer {name!r}; choose one of: {', '.join(sorted(TIMERS))}")
    return TIMERS[name](threads=threads)


def check_timer(name: str, device: str | torch.device) -> Timer:
    """The back-end ``name`` built (so a missing runtime package fails here, before anything is
    written), checked against ``device``: ONNX Runtime's GPU providers time on a CUDA device, the other
    compiled runtimes on the CPU.

    Raises:
        UnknownTimer: a name that is not in :data:`TIMERS`.
        CapdistError: a runtime that is not installed, or one asked to time on a device it does not run on.
    """
    kind = torch.device(device).type
    if name in GPU_TIMERS and (kind != "cuda" or not torch.cuda.is_available()):
        raise CapdistError(f"the {name} latency back-end times on a CUDA GPU; add --device cuda on a machine "
                           "with one, or use --latency-backend onnxruntime")
    timer = get_timer(name)
    if name in GPU_TIMERS:
        timer.check(torch.device(device))
    if name != "eager" and name not in GPU_TIMERS and kind != "cpu":
        raise CapdistError(f"the {name} latency back-end times on the CPU; add --device cpu or use "
                           "--latency-backend eager")
    return timer


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 to 1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
