"""Side-by-side timing: interleaved rounds, per-round ratios to the reference, the fields reports use."""

import time

import torch
from torch import nn

from capdist.measure import time_side_by_side
from capdist.measure.timing import deployed


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


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, nor fold a BatchNorm split from its conv."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x)) if x.sum() > -1e9 else x


class _Wrapper(nn.Module):
    """A user's wrapper torch.fx cannot trace around a body it can."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x):
        return self.body(x) if x.sum() > -1e9 else x


def test_models_are_timed_with_their_batchnorms_folded_as_deployed():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).train()
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    folded, ok = deployed(net)
    x = torch.randn(2, 3, 8, 8)
    assert ok and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(folded(x), net.eval()(x), rtol=1e-5, atol=1e-5)
    assert isinstance(net[1], nn.BatchNorm2d), "the model itself keeps its BatchNorm"
    torch.testing.assert_close(net.eval()(x), folded(x), rtol=1e-5, atol=1e-5)
    branchy, ok = deployed(_Branchy())
    assert not ok and isinstance(branchy.bn, nn.BatchNorm2d)
    wrapper = _Wrapper().eval()
    inner, ok = deployed(wrapper)
    assert ok and not any(isinstance(m, nn.BatchNorm2d) for m in inner.modules())
    torch.testing.assert_close(inner(x), wrapper(x), rtol=1e-5, atol=1e-5)
    net.train()
    t = time_side_by_side({"net": net, "branchy": _Branchy(), "conv": nn.Conv2d(3, 4, 3)}, (3, 8, 8),
                          batch_sizes=(1,), rounds=1, repeats=1)
    assert t["net"]["bn_folded"] and t["conv"]["bn_folded"] and not t["branchy"]["bn_folded"]
    assert net.training
