"""The per-layer latency table and the latency budget (NetAdapt, ECCV 2018; HALP, NeurIPS 2022)."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from capdist.compactor import CompactorConfig, NormSchedule, RetrievalSchedule, attach, surgery
from capdist.errors import UnreachableTarget
from capdist.measure.latency_budget import LatencyBudget, build_latency_budget
from capdist.measure.latency_table import build_latency_table, standalone
from capdist.measure.timer import get_timer
from capdist.testing import TinyMobileNet, TinyResNet
from capdist.testing.latency import FunctionTimer, multiply_adds

SIZE = (3, 16, 16)


def _masked(cm, fractions):
    for g, f in zip(cm.groups, fractions, strict=True):
        keep = torch.zeros(g.spec.period, dtype=torch.bool)
        keep[: cm.allowed_units(g, max(1, round(f * g.spec.period)))] = True
        g.set_mask(g.units_to_mask(keep))


@pytest.mark.parametrize("net", [TinyResNet(width=16), TinyMobileNet()], ids=["resnet", "mobilenet"])
def test_prediction_equals_an_analytic_latency_of_any_pruned_network(net):
    """With a latency that is bilinear in each layer's widths, the table's bilinear lookups between grid points
    reproduce it exactly for widths off the grid: the prediction of a pruned network equals its latency."""
    x = torch.randn(2, *SIZE)
    cm = attach(net, x, CompactorConfig(scope="all"))
    table = build_latency_table(surgery(cm, x).model, SIZE, varies=cm.cost.varying_widths(), cache_dir=None,
                                timer=FunctionTimer(multiply_adds))
    assert table.rest_ms == pytest.approx(0.0, abs=1e-9)
    assert sum(e.ms[-1][-1] for e in table.layers.values()) == pytest.approx(table.total_ms, rel=1e-9)
    rng = np.random.default_rng(0)
    for _ in range(3):
        _masked(cm, rng.uniform(0.3, 1.0, len(cm.groups)))
        pruned = surgery(cm, x, tolerance=None).model
        truth = multiply_adds(pruned, torch.randn(1, *SIZE))
        assert table.predict_model(pruned) == pytest.approx(truth, rel=1e-9)
        assert LatencyBudget(cm, table).milliseconds() == pytest.approx(truth, rel=1e-9)


def test_lookup_at_a_grid_point_agrees_with_timing_the_layer_directly():
    """Tolerance: two timings of one layer taken seconds apart on a shared 2-core CPU agree within a factor of
    two (each is the fastest block of a blocked autorange); a load spike can break that for one pair, so the table
    and the direct figure are taken again, at most three times, until one pair agrees."""
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1))
    ratios = []
    for _ in range(3):
        table = build_latency_table(net, (3, 32, 32), grid=(0.5, 1.0), min_run_time=0.05, cache_dir=None)
        layer, x = standalone(table.layers["2"], 0.5, 1.0, torch.device("cpu"))
        assert layer.in_channels == 32 and layer.out_channels == 64 and x.shape == (1, 32, 32, 32)
        direct = get_timer("eager").prepare(layer, x).fastest_ms(0.05)
        ratios.append(table.layer_ms(np.array([1.0, 0.5]), np.array([1.0, 1.0]))[1] / direct)
        if 0.5 < ratios[-1] < 2.0:
            break
    assert 0.5 < ratios[-1] < 2.0, ratios


def test_table_is_monotone_and_cached_per_batch(tmp_path):
    net = TinyResNet(width=16)
    calls = []

    def counting(module, x):
        calls.append(1)
        return multiply_adds(module, x) + float(np.random.default_rng(len(calls)).uniform(0, 50))

    timer = FunctionTimer(counting, name="counting")
    first = build_latency_table(net, SIZE, cache_dir=tmp_path, timer=timer)
    for entry in first.layers.values():
        ms = np.array(entry.ms)
        assert (np.diff(ms, axis=0) >= 0).all() and (np.diff(ms, axis=1) >= 0).all()
    measured = len(calls)
    again = build_latency_table(net, SIZE, cache_dir=tmp_path, timer=timer)
    assert len(calls) == measured and again.to_dict() == first.to_dict()
    build_latency_table(net, SIZE, batch_size=2, cache_dir=tmp_path, timer=timer)
    assert len(calls) > measured
    for path in tmp_path.iterdir():
        path.write_text("{not json")
    calls.clear()
    build_latency_table(net, SIZE, cache_dir=tmp_path, timer=timer)
    assert calls, "an unreadable cache is measured again"
    calls.clear()
    build_latency_table(net, SIZE, cache_dir=tmp_path, timer=timer)
    assert not calls, "and written again"


def test_a_stall_at_the_full_width_is_measured_again():
    """A stall of the machine while a layer is timed at its full width would survive the monotone envelope
    and make every narrower width look cheap: an entry more than 1.5x what its narrower neighbour allows is
    timed again, and the network is timed twice, so the table equals one measured without stalls (each
    full-width layer and the network stalled once, to 3x their time)."""
    net = TinyResNet(width=16)
    clean = build_latency_table(net, SIZE, cache_dir=None, timer=FunctionTimer(multiply_adds))
    full = {tuple(m.weight.shape) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    stalled = set()

    def stalling(module, x):
        shape = "network" if module is net else tuple(module.weight.shape)
        stall = 3.0 if (shape in full or shape == "network") and shape not in stalled else 1.0
        if stall > 1:
            stalled.add(shape)
        return multiply_adds(module, x) * stall

    table = build_latency_table(net, SIZE, cache_dir=None, timer=FunctionTimer(stalling))
    assert len(stalled) == len(full) + 1, "every full-width layer and the network were stalled once"
    for name, entry in table.layers.items():
        np.testing.assert_allclose(entry.ms, clean.layers[name].ms, rtol=1e-9, err_msg=name)
    assert table.total_ms == pytest.approx(clean.total_ms)
    # layers whose widths never change have no neighbour to compare with: their one entry is timed twice
    stalled.clear()
    fixed = build_latency_table(net, SIZE, varies={}, cache_dir=None, timer=FunctionTimer(stalling))
    assert len(stalled) == len(full) + 1
    for name, entry in fixed.layers.items():
        assert entry.ms[-1][-1] == pytest.approx(clean.layers[name].ms[-1][-1]), name


def _budgeted(per_channel=None, target=0.6):
    torch.manual_seed(0)
    net = TinyResNet(width=16)
    x = torch.randn(2, *SIZE)
    cm = attach(net, x, CompactorConfig(scope="all"))

    def timer(module, inp):
        return multiply_adds(module, inp, per_channel)

    budget = build_latency_budget(cm, TinyResNet(width=16), x, SIZE, cache_dir=None, timer=FunctionTimer(timer))
    return cm, budget, x, timer


def test_budget_calibration_is_exact_when_the_table_is():
    cm, budget, _, _ = _budgeted()
    assert budget.scale == pytest.approx(1.0)
    for probe in budget.calibration["probes"].values():
        assert probe["predicted"] == pytest.approx(probe["measured"], abs=1e-4)
    assert budget.fraction() == pytest.approx(1.0)
    assert budget.calibration["student_vs_teacher"] == pytest.approx(1.0)


@pytest.mark.parametrize("schedule", ["norm", "retrieval"])
def test_schedules_honour_a_latency_budget_and_rank_by_latency_saved(schedule):
    """The output channels of the stem (the only conv that reads 3 channels) cost 40 ms each in latency, which
    FLOPs do not see: with compactor rows of equal norm, the latency budget prunes that group most and meets
    the target, where a FLOPs budget of the same value keeps more of it."""
    cm, budget, x, timer = _budgeted(lambda m: 40.0 if isinstance(m, nn.Conv2d) and m.in_channels == 3 else 0.0)
    expensive = next(g for g in cm.groups if "stem.0" in g.spec.producers)
    if schedule == "norm":
        NormSchedule(cm, 0.6, budget=budget).update(limit=10**9)
    else:
        RetrievalSchedule(cm, 0.6, budget=budget).top_up()
    assert 0.5 < budget.fraction() <= 0.6 + 1e-9
    truth = timer(surgery(cm, x, tolerance=None).model, torch.randn(1, *SIZE)) / budget.reference_ms
    assert truth == pytest.approx(budget.fraction(), rel=1e-6)
    kept_for_latency = int(expensive.mask.sum())
    assert kept_for_latency < expensive.channels // 2
    for g in cm.groups:
        g.set_mask(torch.ones(g.channels, dtype=torch.bool))
    NormSchedule(cm, 0.6).update(limit=10**9)
    assert int(expensive.mask.sum()) > kept_for_latency


def test_recalibration_scales_savings_to_the_measured_widths():
    cm, budget, x, timer = _budgeted()
    NormSchedule(cm, 0.5, budget=budget).update(limit=10**9)
    before = budget.fraction()
    budget.timer = FunctionTimer(lambda module, inp: 0.5 * timer(module, inp) + 0.5 * multiply_adds(budget._plain, inp))
    scale = budget.recalibrate(x)
    assert budget.calibration["during_training"][-1]["measured"] == pytest.approx(1 - 0.5 * (1 - before), abs=1e-4)
    probes = [1 - p["predicted"] for p in budget.calibration["probes"].values()]
    own = 1 - before
    expected = (sum(p * p for p in probes) + 2 * own * 0.5 * own) / (sum(p * p for p in probes) + 2 * own * own)
    assert scale == pytest.approx(expected, rel=1e-4) and 0.5 < scale < 1.0
    assert budget.fraction() == pytest.approx(1 - scale * (1 - before), rel=1e-9)
    restored = LatencyBudget.from_dict(cm, json.loads(json.dumps(budget.to_dict())))
    assert restored.fraction() == pytest.approx(budget.fraction())


def test_unreachable_latency_target_says_latency():
    cm, budget, _, _ = _budgeted()
    lowest = budget.lowest()
    assert 0 < lowest < 0.2
    with pytest.raises(UnreachableTarget, match=f"latency target {lowest / 2:.3f} is below the lowest reachable "
                                                f"{lowest:.3f}"):
        NormSchedule(cm, lowest / 2, budget=budget)


@pytest.mark.parametrize(("odd_penalty", "chosen"), [(0.0, 1), (500.0, 8)])
def test_round_to_is_chosen_by_timing_when_the_user_gave_none(odd_penalty, chosen):
    """Widths rounded up to multiples of 8 carry more channels, so with multiply-adds alone they are slower and
    any width stays allowed; when every layer with a width that is not a multiple of 8 costs 500 ms more, the
    rounded widths are faster and become the run's round_to."""
    torch.manual_seed(0)
    net = TinyResNet(width=12)
    x = torch.randn(2, *SIZE)
    cm = attach(net, x, CompactorConfig(scope="all"))

    def timer(module, inp):
        odd = sum(1 for m in module.modules() if isinstance(m, nn.Conv2d) and m.out_channels % 8)
        return multiply_adds(module, inp) + odd_penalty * odd

    budget = build_latency_budget(cm, TinyResNet(width=12), x, SIZE, cache_dir=None, timer=FunctionTimer(timer),
                                  choose_round_to=True)
    assert budget.calibration["round_to"]["chosen"] == chosen == cm.config.round_to
    NormSchedule(cm, (1 + budget.lowest()) / 2, budget=budget).update(limit=10**9)
    assert any(int(g.mask.sum()) < g.channels for g in cm.groups)
    for g in cm.groups:
        kept = int(g.mask.sum())
        assert kept == g.channels or kept % chosen == 0
