"""The analytic cost model against FLOPs and params worked out by hand."""

import numpy as np
import pytest
import torch
from torch import nn

from capdist.compactor import CompactorConfig, attach


class _Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 6, 1, bias=False)
        self.b2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = torch.relu(self.b2(self.c2(y)))
        return self.fc(y.mean((2, 3)))


def test_flops_and_params_match_hand_count():
    cm = attach(_Chain(), torch.randn(1, 3, 5, 5), CompactorConfig(scope="all"))
    assert sorted(g.name for g in cm.groups) == ["c1", "c2"]
    order = [g.name for g in cm.groups]
    hw = 25

    def hand(k1, k2):
        # convs: k*k*cin*cout*HW MACs; folded BNs cost nothing; fc: in*out
        flops = 9 * 3 * k1 * hw + 1 * k1 * k2 * hw + k2 * 2
        params = 9 * 3 * k1 + k1 + k1 * k2 + k2 + k2 * 2 + 2  # weights + folded biases + fc
        return flops, params

    for k1, k2 in [(8, 6), (4, 6), (2, 3), (1, 1)]:
        f, p = hand(k1, k2)
        kept = np.array([k1 if n == "c1" else k2 for n in order], dtype=float)
        assert cm.flops(kept) == pytest.approx(f)
        assert cm.params(kept) == pytest.approx(p)
    # the original model as fvcore counts it: an affine BN in eval mode costs two FLOPs per
    # element; fvcore does not count torch.mean
    assert cm.original_flops == 9 * 3 * 8 * hw + 8 * 6 * hw + 6 * 2 + 2 * (8 + 6) * hw
