"""Measurement below the engine: FLOPs (fvcore and thop) and params, latency alone and side by side,
retrieval metrics, and the reports built from them."""

from .counting import CountReport, count
from .latency import LatencyReport, measure_latency
from .timing import time_side_by_side

__all__ = ["CountReport", "LatencyReport", "count", "measure_latency", "time_side_by_side"]
