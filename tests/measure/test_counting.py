import torch
from torch import nn

from capdist.measure import count, measure_latency


def test_fvcore_and_thop_agree_on_a_plain_conv_net():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(),
                        nn.Linear(8 * 6 * 6, 5, bias=False))
    r = count(net, torch.randn(1, 3, 6, 6))
    expected = 9 * 3 * 8 * 36 + 8 * 36 * 5
    assert r.fvcore_flops == expected
    assert r.thop_macs == expected
    assert not r.flagged
    assert r.params == 9 * 3 * 8 + 8 * 36 * 5


def test_latency_report_is_ordered_and_has_breakdown():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    r = measure_latency(net, (3, 16, 16), batch_size=4, repeats=5, warmup=1, breakdown=True)
    assert 0 < r.p50_ms <= r.p90_ms
    assert set(r.layers_ms) == {"0", "1"}
    assert r.batch_size == 4 and r.device == "cpu"
