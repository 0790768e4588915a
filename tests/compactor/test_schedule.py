"""Schedule A (ResRep): FLOPs target, round_to, minimum widths, and a real training run."""

import pytest
import torch
from torch import nn

from capdist.compactor import CompactorConfig, NormSchedule, attach, surgery
from capdist.compactor.cost import fvcore_by_module
from capdist.data import load_digits_split
from capdist.errors import UnreachableTarget, UnsupportedModel
from capdist.quickstart import compact_toy
from capdist.testing import TinyMobileNet, TinyResNet


def _random_norms(cm):
    with torch.no_grad():
        for c in cm.compactors():
            c.weight.mul_(torch.rand(c.weight.shape[0]).view(-1, *([1] * (c.weight.dim() - 1))))


@pytest.mark.parametrize("round_to", [1, 8])
def test_update_reaches_target_and_respects_round_to(round_to):
    cm = attach(TinyResNet(in_channels=1, width=16), torch.randn(1, 1, 8, 8),
                CompactorConfig(scope="all", round_to=round_to))
    _random_norms(cm)
    sched = NormSchedule(cm, target=0.4)
    sched.update(limit=10**9)
    assert cm.flops() <= 0.4 * cm.original_flops
    for g in cm.groups:
        kept = int(g.mask.sum())
        assert kept >= 1 and (kept % round_to == 0 or kept == g.channels)
    res = surgery(cm, torch.randn(2, 1, 8, 8))
    for m in res.model.modules():
        if isinstance(m, nn.Conv2d) and m.out_channels != 10:
            assert m.out_channels % round_to == 0
    flops = fvcore_by_module(res.model, (torch.randn(1, 1, 8, 8),))[""]
    assert flops <= 0.4 * cm.original_flops * 1.01


def test_masks_follow_global_norm_order():
    cm = attach(TinyResNet(in_channels=1, width=8), torch.randn(1, 1, 8, 8), CompactorConfig(scope="all"))
    _random_norms(cm)
    NormSchedule(cm, target=0.5).update(limit=10**9)
    kept = torch.cat([g.row_norms()[g.mask] for g in cm.groups])
    dropped = torch.cat([g.row_norms()[~g.mask] for g in cm.groups])
    # Apart from minimum-width guards, every dropped row is weaker than every kept row.
    assert (dropped.max() <= kept.sort().values[len(cm.groups)]).item()


def test_granularity_limits_new_masks_per_update():
    cm = attach(TinyResNet(in_channels=1, width=8), torch.randn(1, 1, 8, 8), CompactorConfig(scope="all"))
    _random_norms(cm)
    sched = NormSchedule(cm, target=0.3, warmup=2, interval=3, granularity=5)
    updates = [sched.step() for _ in range(8)]
    assert updates == [False, True, False, False, True, False, False, True]
    masked = sum(int((~g.mask).sum()) for g in cm.groups)
    assert masked == 15


def test_unreachable_target_names_lowest_fraction():
    cm = attach(TinyResNet(in_channels=1, width=8), torch.randn(1, 1, 8, 8))
    lowest = cm.min_flops() / cm.original_flops
    with pytest.raises(UnreachableTarget, match=f"lowest reachable {lowest:.3f}"):
        NormSchedule(cm, target=lowest / 2)


def test_training_with_schedule_keeps_accuracy():
    data = load_digits_split()
    r = compact_toy(data, model_name="tiny_resnet", target=0.35, epochs=5, compact_epochs=8)
    assert r.flops_after <= 0.35 * r.flops_before * 1.01
    assert r.max_masked_row_norm < r.threshold
    assert r.accuracy_before > 0.95
    assert r.accuracy_after >= r.accuracy_before - 0.02
    assert r.accuracy_after == pytest.approx(r.accuracy_masked, abs=1e-9)


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        raise RuntimeError("custom op without autograd")


class _NoConv(nn.Module):
    def forward(self, x):
        return x * 2


def test_bad_models_give_one_line_and_leave_model_untouched():
    m = _Untraceable()
    keys = set(m.state_dict())
    with pytest.raises(UnsupportedModel, match="torch-pruning cannot trace _Untraceable"):
        attach(m, torch.randn(1, 1, 8, 8))
    assert set(m.state_dict()) == keys
    with pytest.raises(UnsupportedModel, match="no channel group"):
        attach(_NoConv(), torch.randn(1, 1, 8, 8))


def test_strict_names_the_unsupported_layer_and_filter_fn_skips_it():
    class PreAct(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.b = nn.Conv2d(8, 8, 3, padding=1)
            self.bn_b = nn.BatchNorm2d(8)
            self.c = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = torch.relu(self.a(x))
            y = self.b(torch.relu(self.bn(y)))
            return self.c(torch.relu(self.bn_b(y)))

    m = PreAct()
    with pytest.raises(UnsupportedModel, match="cannot compact 'a'.*BatchNorm 'bn'.*filter_fn"):
        attach(m, torch.randn(1, 1, 8, 8), strict=True)
    assert not any(n.endswith("compactor") for n, _ in m.named_modules())
    cm = attach(m, torch.randn(1, 1, 8, 8),
                CompactorConfig(filter_fn=lambda mod, name: name != "a"), strict=False)
    assert [g.name for g in cm.groups] == ["b"]


def test_mobilenet_depthwise_groups_get_diagonal_compactors():
    cm = attach(TinyMobileNet(in_channels=1), torch.randn(1, 1, 8, 8))
    kinds = {k for g in cm.groups for k in g.spec.kinds}
    assert {"dense", "diagonal"} <= kinds


@pytest.mark.parametrize("diagonal_internal", [False, True])
def test_diagonal_options_keep_surgery_exact(diagonal_internal):
    net = TinyResNet(in_channels=1, width=8)
    x = torch.randn(2, 1, 8, 8)
    cm = attach(net, x[:1], CompactorConfig(scope="all", diagonal_residual=True, diagonal_internal=diagonal_internal))
    residual = [g for g in cm.groups if g.spec.residual]
    internal = [g for g in cm.groups if not g.spec.residual]
    assert residual and all(type(c).__name__ == "DiagonalCompactor" for g in residual for c in g.compactors)
    assert internal and all((type(c).__name__ == "DiagonalCompactor") == diagonal_internal
                            for g in internal for c in g.compactors)
    _random_norms(cm)
    NormSchedule(cm, target=0.5).update(limit=10**9)
    res = surgery(cm, x)
    assert res.rel_diff <= 1e-5


def test_min_ratio_floors_every_group_and_names_itself_when_unreachable():
    import math

    from capdist.compactor.schedule import check_target

    net = TinyResNet(in_channels=1, width=8)
    cm = attach(net, torch.randn(2, 1, 8, 8), CompactorConfig(scope="all", min_ratio=0.3))
    for g in cm.groups:
        assert cm.min_units(g) * g.spec.unit_size == max(1, math.ceil(0.3 * g.channels))
    lowest = cm.min_flops() / cm.original_flops
    sched = NormSchedule(cm, target=lowest + 1e-6)
    sched.update(limit=10**9)
    for g in cm.groups:
        assert int(g.mask.sum()) >= math.ceil(0.3 * g.channels)
    assert sched.reached()
    with pytest.raises(UnreachableTarget, match="min_ratio"):
        check_target(cm, lowest * 0.9)


def test_until_paces_the_masks_to_the_target_by_that_step_and_finish_says_when_not():
    cm = attach(TinyResNet(in_channels=1, width=16), torch.randn(1, 1, 8, 8), CompactorConfig(scope="all"))
    _random_norms(cm)
    paced = NormSchedule(cm, target=0.4, warmup=4, interval=5, granularity=1, until=24)
    counts = []
    for _ in range(24):
        paced.step()
        counts.append(paced.masked_units)
    assert paced.reached() and paced.check_reached(strict=True)
    assert counts[2] == 0 and all(a <= b for a, b in zip(counts, counts[1:], strict=False))
    halfway = counts[13]  # step 14: 10 of the 20 steps between warm-up and until
    assert 0.3 * counts[-1] <= halfway <= 0.7 * counts[-1]

    slow = attach(TinyResNet(in_channels=1, width=16), torch.randn(1, 1, 8, 8), CompactorConfig(scope="all"))
    _random_norms(slow)
    sched = NormSchedule(slow, target=0.4, warmup=4, interval=5, granularity=1)
    for _ in range(24):
        sched.step()
    assert sched.masked_units == 5 and not sched.reached()  # ResRep's pacing: one unit per update
    with pytest.warns(UserWarning, match="not the target 0.400"):
        assert not sched.check_reached()
    with pytest.raises(UnreachableTarget, match="pass until=STEP"):
        sched.check_reached(strict=True)
