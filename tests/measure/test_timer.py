"""The one timer: the table of back-ends by name, and a timer injected through the seam is the one used."""

import pytest
import torch
from torch import nn

from capdist.errors import CapdistError
from capdist.measure import TIMERS, UnknownTimer, get_timer, measure_latency, time_side_by_side
from capdist.measure.latency_table import build_latency_table
from capdist.measure.timer import EagerTimer
from capdist.testing import TinyResNet
from capdist.testing.latency import FunctionTimer, multiply_adds

SIZE = (3, 16, 16)


def test_unknown_back_end_is_refused_in_one_line_that_lists_the_valid_names():
    with pytest.raises(UnknownTimer) as caught:
        get_timer("onnxruntime-typo")
    message = str(caught.value)
    assert isinstance(caught.value, CapdistError) and "\n" not in message
    assert message == f"unknown timer 'onnxruntime-typo'; choose one of: {', '.join(sorted(TIMERS))}"
    assert "eager" in message
    net = nn.Conv2d(3, 4, 3)
    with pytest.raises(UnknownTimer, match="choose one of: eager"):
        build_latency_table(net, SIZE, grid=(0.5, 1.0), cache_dir=None, timer="nope")


def test_names_resolve_to_their_back_end_and_a_timer_passes_through():
    assert isinstance(get_timer(), EagerTimer) and isinstance(get_timer("eager"), EagerTimer)
    assert get_timer("eager", threads=3).describe(torch.randn(2, 3, 4, 4)) == {
        "runtime": "eager", "threads": 3, "batch": 2, "precision": "float32"}
    fake = FunctionTimer(multiply_adds)
    assert get_timer(fake) is fake


def test_the_latency_table_times_with_the_injected_timer():
    """Every entry and the whole network come from the fake: each equals the analytic figure the fake
    gives, which no measurement would, and the fake's name is in the cache key."""
    net = TinyResNet(width=16)
    fake = FunctionTimer(multiply_adds, name="analytic")
    table = build_latency_table(net, SIZE, grid=(0.5, 1.0), cache_dir=None, timer=fake)
    assert table.key["timer"] == "analytic"
    assert table.total_ms == multiply_adds(net, torch.randn(1, *SIZE))
    modules = dict(net.named_modules())
    for name, entry in table.layers.items():
        layer = modules[name]
        x = torch.randn(*entry.input_shape)
        assert entry.ms[-1][-1] == pytest.approx(multiply_adds(layer, x), rel=1e-12), name
    assert [kind for kind, module in fake.calls if module is net] == ["fastest", "fastest"]
    assert {kind for kind, _ in fake.calls} == {"fastest"}


def test_side_by_side_and_single_model_latency_time_with_the_injected_timer():
    big, small = nn.Conv2d(3, 16, 3), nn.Conv2d(3, 4, 3)
    fake = FunctionTimer(multiply_adds, name="analytic")
    t = time_side_by_side({"big": big, "small": small}, SIZE, batch_sizes=(1, 2), rounds=3, repeats=2,
                          reference="big", timer=fake)
    for b in ("b1", "b2"):
        assert t["small"][b]["ratio"] == t["small"][b]["ratio_min"] == t["small"][b]["ratio_max"] == pytest.approx(0.25)
    assert t["big"]["b2"]["median_ms"] == 2 * t["big"]["b1"]["median_ms"] == multiply_adds(big, torch.randn(2, *SIZE))
    assert t["big"]["runtime"] == "analytic" and t["big"]["threads"] == torch.get_num_threads()
    # per model and batch: one warm-up figure, then one per round
    assert sum(module is big for _, module in fake.calls) == 2 * (1 + 3)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    r = measure_latency(net, SIZE, batch_size=2, repeats=4, warmup=1, breakdown=True, timer=fake)
    assert r.p50_ms == r.p90_ms == multiply_adds(net, torch.randn(2, *SIZE))
    assert r.runtime == "analytic" and list(r.layers_ms) == ["0", "2", "1"] and r.layers_ms["1"] == 0.0


def test_a_cached_table_is_read_back_only_by_the_same_runtime_version(tmp_path):
    """A table measured by one version of a runtime is not read back for another (a runtime upgrade
    changes what each layer costs): the runtime the timer describes, version included, is in the key."""

    class Versioned(FunctionTimer):
        def __init__(self, fn, version: str) -> None:
            super().__init__(fn, name="runtime")
            self.version = version

        def describe(self, x):
            return {**super().describe(x), "runtime": f"runtime {self.version}"}

    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    first = build_latency_table(net, SIZE, grid=(0.5, 1.0), cache_dir=tmp_path, timer=Versioned(multiply_adds, "1"))
    again = Versioned(lambda m, x: 7.0, "1")
    assert build_latency_table(net, SIZE, grid=(0.5, 1.0), cache_dir=tmp_path, timer=again).total_ms == first.total_ms
    assert not again.calls  # read from the cache
    upgraded = Versioned(lambda m, x: 7.0, "2")
    assert build_latency_table(net, SIZE, grid=(0.5, 1.0), cache_dir=tmp_path, timer=upgraded).total_ms == 7.0
    assert len(list(tmp_path.glob("*.json"))) == 2
