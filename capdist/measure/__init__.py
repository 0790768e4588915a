"""Measurement below the engine: FLOPs (fvcore and thop) and params, latency alone and side by side
through one timer with named back-ends, retrieval metrics, and the reports built from them."""

from .counting import CountReport, count
from .latency import LatencyReport, measure_latency
from .timer import TIMERS, Timer, Timing, UnknownTimer, get_timer
from .timing import time_side_by_side

__all__ = ["TIMERS", "CountReport", "LatencyReport", "Timer", "Timing", "UnknownTimer", "count", "get_timer",
           "measure_latency", "time_side_by_side"]
