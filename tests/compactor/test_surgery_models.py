"""attach -> mask half of every group -> surgery, over torchvision's CNN families."""

import pytest
import torch
import torchvision
from torch import nn

from capdist.compactor import CompactorConfig, attach, replay, surgery
from capdist.compactor.cost import fvcore_by_module
from capdist.compactor.layers import COMPACTOR_TYPES
from capdist.errors import SurgeryError
from capdist.testing import TinyMobileNet, TinyResNet

MODELS = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
          "regnet_x_400mf", "vgg11_bn", "shufflenet_v2_x1_0", "convnext_tiny"]
SIZE = {"vgg11_bn": 32, "convnext_tiny": 32}


def _half_masks(cm):
    gen = torch.Generator().manual_seed(1)
    for g in cm.groups:
        with torch.no_grad():
            for c in g.compactors:
                c.weight.add_(0.1 * torch.randn(c.weight.shape, generator=gen))
        units = torch.zeros(g.spec.period, dtype=torch.bool)
        units[torch.randperm(g.spec.period, generator=gen)[: max(1, g.spec.period // 2)]] = True
        g.set_mask(g.units_to_mask(units))


def _build(name):
    if name.startswith("tiny"):
        return {"tiny_resnet": TinyResNet, "tiny_mobilenet": TinyMobileNet}[name](in_channels=1), 1
    return torchvision.models.get_model(name, weights=None, num_classes=10), 3


@pytest.mark.parametrize("scope", ["internal", "all"])
@pytest.mark.parametrize("name", MODELS)
def test_surgery_matches_masked_model_and_cost(name, scope):
    model, chans = _build(name)
    size = SIZE.get(name, 48)
    x = torch.randn(2, chans, size, size)
    cm = attach(model, x[:1], CompactorConfig(scope=scope))
    assert cm.groups
    _half_masks(cm)
    res = surgery(cm, x)
    assert not any(isinstance(m, COMPACTOR_TYPES) for m in res.model.modules())
    fv = fvcore_by_module(res.model, (x[:1],))[""]
    assert fv < cm.original_flops
    assert cm.flops() == pytest.approx(fv, rel=0.01)
    assert res.rel_diff <= 1e-4, res.max_abs_diff
    # cm.model still has its compactors: surgery works on a copy
    assert any(isinstance(m, COMPACTOR_TYPES) for m in cm.model.modules())


@pytest.mark.parametrize("name", ["tiny_resnet", "tiny_mobilenet", "resnet18"])
def test_replay_reproduces_shapes_and_outputs(name):
    model, chans = _build(name)
    x = torch.randn(2, chans, 16, 16)
    cm = attach(model, x[:1], CompactorConfig(scope="all"))
    _half_masks(cm)
    res = surgery(cm, x)
    fresh, _ = _build(name)
    rebuilt = replay(fresh, res.plan)
    state = res.model.state_dict()
    shapes = {k: v.shape for k, v in state.items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), res.model(x))


def test_attach_keeps_train_eval_mode_and_state_keys():
    model = TinyResNet(in_channels=1)
    keys = set(model.state_dict())
    model.eval()
    cm = attach(model, torch.randn(1, 1, 8, 8))
    assert not model.training
    assert keys <= set(model.state_dict())
    assert cm.model is model
    model.train()
    cm2_model = TinyResNet(in_channels=1).train()
    attach(cm2_model, torch.randn(1, 1, 8, 8))
    assert cm2_model.training


def test_surgery_outputs_equal_masked_model_with_real_masks_zeroed():
    model = TinyResNet(in_channels=1)
    x = torch.randn(4, 1, 8, 8)
    cm = attach(model, x[:1], CompactorConfig(scope="all"))
    _half_masks(cm)
    res = surgery(cm, x)
    with torch.no_grad():
        for c in cm.compactors():
            c.weight.mul_(c.mask.view(-1, 1, 1, 1).float())
        masked = model.eval()(x)
        assert torch.allclose(res.model(x), masked, atol=1e-5)


class _Grouped(nn.Module):
    """conv + BN feeding a 2-group conv: its input channels are pruned in units (c, c + 4)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        return self.head(self.b(self.a(x)))


def _grouped_cm():
    torch.manual_seed(0)
    cm = attach(_Grouped().eval(), torch.randn(1, 3, 8, 8), CompactorConfig(scope="all"))
    group = next(g for g in cm.groups if g.spec.unit_size > 1)
    return cm, group


def test_set_mask_refuses_a_mask_that_splits_a_grouped_conv_unit():
    cm, group = _grouped_cm()
    split = torch.ones(group.channels, dtype=torch.bool)
    split[0] = False                        # channel 0 without its partner in the other conv group
    with pytest.raises(ValueError, match="splits a pruning unit"):
        group.set_mask(split)
    units = torch.ones(group.spec.period, dtype=torch.bool)
    units[0] = False
    group.set_mask(group.units_to_mask(units))
    assert int((~group.mask).sum()) == group.spec.unit_size


def test_surgery_raises_when_its_result_differs_from_the_masked_model():
    cm, group = _grouped_cm()
    with torch.no_grad():
        for c in cm.compactors():
            c.weight.mul_(torch.rand(c.weight.shape[0]).view(-1, *([1] * (c.weight.dim() - 1))) + 0.5)
        for c in group.compactors:          # what set_mask refuses, written behind its back
            c.mask[0] = False
    x = torch.randn(4, 3, 8, 8)
    with pytest.raises(SurgeryError, match="differ from the masked model"):
        surgery(cm, x)
    kept = surgery(cm, x, tolerance=None)
    assert kept.rel_diff > 1e-3
