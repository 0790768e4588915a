"""``torch.utils.benchmark`` for every timing back-end: the module (imported quietly) and a
:class:`~capdist.measure.timer.Timing` for any zero-argument inference call."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any


def benchmark_module():
    """``torch.utils.benchmark``, imported without its CUDA-toolkit warning on CPU-only machines."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import benchmark

    return benchmark


class BenchmarkTiming:
    """The mean and the fastest-block figures of a ``torch.utils.benchmark.Timer``, shared by every back-end."""

    def __init__(self, timer: Any) -> None:
        self._timer = timer

    def mean_ms(self, passes: int) -> float:
        return self._timer.timeit(passes).mean * 1e3

    def fastest_ms(self, min_run_time: float) -> float:
        self._timer.timeit(1)
        return min(self._timer.blocked_autorange(min_run_time=min_run_time).times) * 1e3


class CallTiming(BenchmarkTiming):
    """Times ``run()`` (one inference in a compiled runtime) with ``torch.utils.benchmark``, as the
    eager timer times a forward, so figures of every back-end come from the same statistics."""

    def __init__(self, run: Callable[[], Any]) -> None:
        super().__init__(benchmark_module().Timer("run()", globals={"run": run}, num_threads=1))
        self._run = run

    def samples_ms(self, count: int) -> list[float]:
        self._run()
        return [self._timer.timeit(1).mean * 1e3 for _ in range(count)]
