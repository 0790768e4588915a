"""Counting and timing: FLOPs (fvcore and thop), params, latency, retrieval metrics."""

from .counting import CountReport, count
from .latency import LatencyReport, measure_latency

__all__ = ["CountReport", "LatencyReport", "count", "measure_latency"]
