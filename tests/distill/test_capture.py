"""Feature capture records copies: in-place ops after a hook cannot change what it kept."""

import copy

import pytest
import torch
from torch import nn

from capdist.compactor import CompactorConfig, attach
from capdist.distill import FeatureCapture, Teacher
from capdist.distill.features import block_feature_loss
from capdist.engine.compress import block_layers
from capdist.models.retrieval import RetrievalNet


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


def test_block_loss_and_retrieval_features_are_zero_for_a_student_equal_to_its_teacher():
    torch.manual_seed(0)
    teacher = RetrievalNet("resnet18", num_classes=5).eval()
    student = copy.deepcopy(teacher)
    x = torch.randn(4, 3, 32, 32)
    cm = attach(student, x[:2], CompactorConfig(scope="all", diagonal_residual=True))
    student.eval()
    frozen = Teacher(teacher)
    blocks = block_layers(cm)
    groups = [g.spec.anchors[0] for g in cm.groups]
    assert len(blocks) == 8
    pre = FeatureCapture(student, [b + ".compactor" for b in blocks], inputs=True, pool=True)
    cap_t = FeatureCapture(frozen, blocks + groups, pool=True)
    cap_s = FeatureCapture(student, groups, pool=True)
    student(x)
    frozen(x)
    loss = block_feature_loss([pre.features[b + ".compactor"] for b in blocks], [cap_t.features[b] for b in blocks])
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-4)
    for name in groups:
        torch.testing.assert_close(cap_s.features[name], cap_t.features[name], atol=1e-5, rtol=1e-5)
    # the features are taken before the ReLU: the block outputs are BN outputs with negative means
    assert any((cap_t.features[b] < 0).any() for b in blocks)
