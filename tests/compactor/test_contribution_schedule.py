"""Schedule C: units ranked by retrieval contribution, under the same target and pacing as ResRep's."""

import math

import torch

from capdist.compactor import CompactorConfig, PooledFeatures, attach
from capdist.compactor.contribution_schedule import ContributionSchedule, unit_contributions
from capdist.testing import TinyResNet


def test_unit_contributions_by_hand():
    # one query (1, 1, 0, 0)/sqrt2; bank: itself and (0, 0, 1, 1)/sqrt2; k=1 picks itself:
    # |q_c * g_c| = (0.5, 0.5, 0, 0); with period 2 the units are {0, 2} and {1, 3}
    q = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    bank = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    torch.testing.assert_close(unit_contributions(q, bank, 1, 4), torch.tensor([0.5, 0.5, 0.0, 0.0]))
    torch.testing.assert_close(unit_contributions(q, bank, 1, 2), torch.tensor([0.5, 0.5]))
    # k=2 averages in the orthogonal neighbour: half of that
    torch.testing.assert_close(unit_contributions(q, bank, 2, 4), torch.tensor([0.25, 0.25, 0.0, 0.0]))


def test_masks_follow_the_contribution_not_the_norm():
    cm = attach(TinyResNet(in_channels=1, width=8), torch.randn(1, 1, 8, 8), CompactorConfig(scope="internal"))
    sched = ContributionSchedule(cm, target=0.6, warmup=2, interval=1, until=2, k=2)  # scores every step
    gen = torch.Generator().manual_seed(0)
    # every channel has the same norm; the last half of every group's channels never contributes
    for _ in range(3):
        feats = {}
        for g in cm.groups:
            f = torch.rand(6, g.channels, generator=gen) + 0.1
            f[:, g.channels // 2:] = 0.0
            feats[g.name] = f
        sched.step(PooledFeatures(feats, {n: f.clone() for n, f in feats.items()}))
    assert sched.reached()
    for g in cm.groups:
        masked = (~g.mask).nonzero().flatten().tolist()
        assert masked and min(masked) >= g.channels // 2, (g.name, masked)
    assert sched.report()["mask_ranking"]["groups_scored"] == len(cm.groups)


def test_state_round_trips():
    cm = attach(TinyResNet(in_channels=1, width=8), torch.randn(1, 1, 8, 8), CompactorConfig(scope="internal"))
    sched = ContributionSchedule(cm, target=0.6, warmup=5, interval=1)
    feats = {g.name: torch.rand(4, g.channels) for g in cm.groups}
    for _ in range(2):
        sched.step(PooledFeatures(feats, feats))
    other = ContributionSchedule(cm, target=0.6, warmup=5, interval=1)
    other.load_state_dict(sched.state_dict())
    assert other.steps == 2 and all(torch.equal(other.scores[n], s) for n, s in sched.scores.items())
    assert not math.isnan(float(sum(s.sum() for s in other.scores.values())))
