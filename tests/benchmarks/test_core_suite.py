"""The step-cost benchmark's variants compute what they replace (a speed figure of a wrong model is no figure)."""

import copy

import pytest
import torch
import torchvision

from capdist.benchmarks import core_suite
from capdist.compactor import CompactorConfig, attach


def test_scales_inside_the_norm_keep_the_models_values_and_outputs():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    attach(model, x[:1], CompactorConfig(scope="all", diagonal_residual=True))
    before = copy.deepcopy(model.state_dict())
    core_suite._scales_into_norms(model, x)
    swapped = [m for m in model.modules() if type(m) is core_suite._ScaleInNorm]
    assert swapped and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_wrong_variant_is_refused(monkeypatch):
    def no_bias_scale(self, x):
        s = self.compactor.weight.view(-1)
        return torch.nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight * s, self.bias,
                                              self.training, self.momentum, self.eps)

    monkeypatch.setattr(core_suite._ScaleInNorm, "forward", no_bias_scale)
    model = torchvision.models.resnet18(num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    attach(model, x[:1], CompactorConfig(scope="all", diagonal_residual=True))
    with pytest.raises(AssertionError, match="differ"):
        core_suite._scales_into_norms(model, x)
