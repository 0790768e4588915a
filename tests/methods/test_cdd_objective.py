"""CDD's objective: the feature loss and the schedule's features are taken where the authors take them."""

import copy

import pytest
import torch

from capdist.compactor import CompactorConfig, attach
from capdist.distill import Teacher
from capdist.methods.cdd_objective import CDDObjective
from capdist.methods.settings import DistillConfig
from capdist.models.retrieval import RetrievalNet


@pytest.mark.parametrize("backbone,blocks", [("resnet18", 8), ("resnet50", 16)])
def test_cdd_objective_of_a_student_equal_to_its_teacher_has_zero_feature_loss(backbone, blocks):
    """Through the objective ``compress`` trains with: block loss 0 and identical retrieval features."""
    torch.manual_seed(0)
    teacher = RetrievalNet(backbone, num_classes=5).eval()
    student = copy.deepcopy(teacher)
    x = torch.randn(4, 3, 64, 64)
    cm = attach(student, x[:2], CompactorConfig(scope="all", diagonal_residual=True))
    student.eval()
    frozen = Teacher(teacher)
    objective = CDDObjective(student, frozen, cm, x[:2], 5, DistillConfig())
    objective.capture_groups(student, frozen, cm)
    assert len(objective.blocks) == blocks
    terms = objective(student, x, torch.tensor([0, 0, 1, 1]), 0)
    assert float(terms["cdd_block"].detach()) == pytest.approx(0.0, abs=1e-4)
    assert float(terms["kd"].detach()) == pytest.approx(0.0, abs=1e-5)
    features = objective.pooled_features()
    assert features.student.keys() == features.teacher.keys() == {g.name for g in cm.groups}
    for name in features.student:
        torch.testing.assert_close(features.student[name], features.teacher[name], atol=1e-5, rtol=1e-5)
    # taken before the ReLU: a block's pooled BN output has negative entries
    pooled = objective._features_t.features
    assert any((pooled[b] < 0).any() for b in objective.blocks)
    objective.remove()
