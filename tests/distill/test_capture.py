"""Feature capture records copies: in-place ops after a hook cannot change what it kept."""

import pytest
import torch
from torch import nn

from capdist.distill import FeatureCapture


@pytest.mark.parametrize("pool", [False, True])
def test_capture_keeps_the_bn_output_before_an_inplace_relu(pool):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True)).eval()
    cap = FeatureCapture(net, ["1"], pool=pool)
    x = torch.randn(2, 3, 8, 8)
    net(x)
    expected = net[1](net[0](x))
    expected = expected.mean((2, 3)) if pool else expected
    assert (cap.features["1"] < 0).any()
    torch.testing.assert_close(cap.features["1"], expected)
