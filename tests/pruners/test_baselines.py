"""Baseline pruners: the FLOPs search lands on its target, the plan replays, bad methods fail in one line."""

import json
from functools import cache

import pytest
import torch
from torch import nn

from capdist.compactor.cost import fvcore_by_module
from capdist.errors import CapdistError, UnsupportedModel
from capdist.pruners import METHODS, prune_to_flops, replay_history
from capdist.testing import TinyMobileNet, TinyResNet

TARGET = 0.4
TOLERANCE = 0.05  # prune_to_flops stops once the FLOPs are within this fraction below the target

# (model class, width, method, global pruning): per-layer and global ranking, plain and depthwise nets.
CASES = {
    "magnitude": (TinyResNet, 32, "magnitude", False),
    "lamp-global": (TinyMobileNet, 16, "lamp", True),
    "taylor-global": (TinyResNet, 32, "taylor", True),
}


def _example() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 16, 16, generator=gen), torch.randint(0, 10, (4,), generator=gen)


def _model(case: str, seed: int = 0) -> nn.Module:
    cls, width, _, _ = CASES[case]
    torch.manual_seed(seed)
    return cls(num_classes=10, width=width).eval()


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@cache
def _pruned(case: str):
    """(original model, its shapes before pruning, result), pruned once per module."""
    _, _, method, global_pruning = CASES[case]
    model = _model(case)
    before = _shapes(model)
    x, y = _example()

    def loss_fn(net):
        return nn.functional.cross_entropy(net(x), y)

    res = prune_to_flops(model, x, method, TARGET, global_pruning=global_pruning, tolerance=TOLERANCE,
                         loss_fn=loss_fn if method == "taylor" else None)
    return model, before, res


@pytest.mark.parametrize("case", list(CASES))
def test_flops_land_at_or_under_the_target_within_tolerance(case):
    model, before, res = _pruned(case)
    x, _ = _example()
    flops = fvcore_by_module(res.model, (x[:1],))[""]
    original = fvcore_by_module(model, (x[:1],))[""]
    fraction = flops / original
    assert TARGET * (1 - TOLERANCE) <= fraction <= TARGET, fraction
    assert (res.flops, res.original_flops) == (flops, original)
    assert 0 < res.ratio < 0.95
    assert _shapes(model) == before, "the input model must not be modified"
    res.model.eval()
    assert res.model(x).shape == model(x).shape == (4, 10), "the output width is never pruned"


def test_global_ranking_gives_method_dependent_widths():
    """Per-layer pruning cuts every layer by the same ratio; global LAMP / Taylor do not."""
    widths = {}
    for case in ("magnitude", "taylor-global"):
        _, _, res = _pruned(case)
        convs = [m for m in res.model.modules() if isinstance(m, nn.Conv2d)]
        widths[case] = [c.out_channels for c in convs]
    assert widths["magnitude"] != widths["taylor-global"]


@pytest.mark.parametrize("case", ["lamp-global", "taylor-global"])
def test_replay_rebuilds_the_pruned_model_from_its_plan(case):
    _, _, res = _pruned(case)
    plan = json.loads(json.dumps(res.plan))  # as written to and read from plan.json
    assert plan["kind"] == "torch-pruning" and plan["method"] == CASES[case][2]

    fresh = _model(case, seed=1)
    assert _shapes(fresh) != _shapes(res.model)
    replayed = replay_history(fresh, plan)
    assert _shapes(replayed) == _shapes(res.model)

    replayed.load_state_dict(res.model.state_dict())
    res.model.eval()
    x, _ = _example()
    with torch.no_grad():
        torch.testing.assert_close(replayed(x), res.model(x), rtol=0, atol=0)


def test_unknown_method_is_a_one_line_error():
    with pytest.raises(UnsupportedModel) as info:
        prune_to_flops(TinyResNet(width=8).eval(), torch.randn(1, 3, 16, 16), "l3", 0.5)
    message = str(info.value)
    assert isinstance(info.value, CapdistError) and "\n" not in message
    assert message.startswith("unknown pruning method 'l3'; valid: ")
    assert message.split("valid: ")[1].split(", ") == list(METHODS)


def test_taylor_without_a_loss_is_a_one_line_error():
    with pytest.raises(UnsupportedModel, match=r"^Taylor importance needs a loss on a batch \(pass loss_fn\)$"):
        prune_to_flops(TinyResNet(width=8).eval(), torch.randn(1, 3, 16, 16), "taylor", 0.5)
