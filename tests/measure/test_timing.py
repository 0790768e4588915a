"""Side-by-side timing: interleaved rounds, per-round ratios to the reference, the fields reports use."""

import time

import torch
from torch import nn

from capdist.measure import time_side_by_side


class _Sleeper(nn.Module):
    """A forward pass of known duration (sleeps), so the ratio has a ground truth."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        time.sleep(self.seconds)
        return x


def test_ratios_follow_known_durations_and_the_reference_is_exactly_one():
    fast, slow = _Sleeper(0.004), _Sleeper(0.012)
    t = time_side_by_side({"fast": fast, "slow": slow}, (3, 4, 4), batch_sizes=(1, 2), rounds=3, repeats=2,
                          warmup=1, reference="fast")
    for b in ("b1", "b2"):
        assert t["fast"][b]["ratio"] == t["fast"][b]["ratio_min"] == t["fast"][b]["ratio_max"] == 1.0
        assert 2.2 < t["slow"][b]["ratio"] < 3.3, t["slow"][b]
        assert t["slow"][b]["p10_ms"] <= t["slow"][b]["median_ms"] <= t["slow"][b]["p90_ms"]
    # at least warm-up + rounds x repeats per batch size (torch's Timer warms up inside each call too)
    assert fast.calls == slow.calls >= 2 * (1 + 3 * 2)
    assert t["slow"]["threads"] == torch.get_num_threads() and t["slow"]["input_size"] == [3, 4, 4]
    assert t["slow"]["rounds"] == 3 and t["slow"]["device"] == "cpu"


def test_models_keep_their_mode_and_may_take_their_own_input_size():
    a, b = nn.Conv2d(3, 4, 3).train(), nn.Conv2d(3, 4, 3).train()
    t = time_side_by_side({"a": a, "b": b}, (3, 8, 8), batch_sizes=(1,), rounds=1, repeats=1,
                          input_sizes={"b": (3, 12, 12)})
    assert a.training and b.training
    assert t["a"]["input_size"] == [3, 8, 8] and t["b"]["input_size"] == [3, 12, 12]
