"""The combined objective: spec parsing, capture, adapters, errors, and training with every loss."""

import json

import pytest
import torch

from capdist.data.retrieval import TensorImages
from capdist.distill import REGISTRY, DistillObjective, Teacher, UnknownFeature, UnknownLoss, parse_spec
from capdist.distill.adapters import ShapeMismatch
from capdist.engine import TrainConfig, Trainer
from capdist.models import RetrievalNet

LAYERS = {"fitnet": "@backbone.layer2", "at": "@backbone.layer2",
          "reviewkd": "@backbone.layer1+backbone.layer2", "cdd_pooled": "@backbone.layer1+backbone.layer2",
          "cdd_block": "@backbone.layer1+backbone.layer2"}


def _nets():
    torch.manual_seed(0)
    teacher = RetrievalNet("tiny_resnet", num_classes=4, backbone_kwargs={"width": 16}).eval()
    student = RetrievalNet("tiny_resnet", num_classes=4, backbone_kwargs={"width": 8})
    return student, Teacher(teacher)


def test_teacher_stays_frozen_in_eval_mode():
    student, teacher = _nets()
    torch.nn.ModuleDict({"s": student, "t": teacher}).train()
    assert student.training and not teacher.training and not teacher.model.training
    assert not any(p.requires_grad for p in teacher.parameters())


def test_parse_spec_and_defaults():
    terms = parse_spec("kd:1,rkd_distance,fitnet:2@backbone.layer3")
    assert [t.name for t in terms] == ["kd", "rkd_distance", "fitnet"]
    assert terms[1].weight is None and terms[2].layers == ("backbone.layer3",)


def test_bad_specs_are_one_line():
    with pytest.raises(UnknownLoss, match="unknown distillation loss 'kdd'.*did you mean.*valid: at, cc"):
        parse_spec("kdd:1")
    student, teacher = _nets()
    x = torch.randn(4, 3, 8, 8)
    with pytest.raises(UnknownFeature, match="'backbone.layer5'.*did you mean backbone.layer"):
        DistillObjective(parse_spec("fitnet@backbone.layer5"), student, teacher, x)
    with pytest.raises(ShapeMismatch, match="spatial size"):
        DistillObjective(parse_spec("fitnet@backbone.layer1"), student,
                         Teacher(RetrievalNet("resnet18", num_classes=4)), torch.randn(2, 3, 32, 32))
    with pytest.raises(UnknownLoss, match="needs one layer name"):
        DistillObjective(parse_spec("fitnet:2"), student, teacher, x)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_loss_decreases_when_distilling_through_the_engine(name, tmp_path):
    student, teacher = _nets()
    gen = torch.Generator().manual_seed(1)
    data = TensorImages(torch.randn(32, 3, 8, 8, generator=gen), torch.arange(32) % 4)
    distill = DistillObjective(parse_spec(name + LAYERS.get(name, "")), student, teacher, data.images[:4])
    label = next(iter(distill(student(data.images[:4]), teacher(data.images[:4]), data.pids[:4])))

    def objective(model, images, pids, step):
        terms = distill(model(images), teacher(images), pids)
        return {"loss": sum(terms.values()), **terms}

    params = list(student.parameters()) + list(distill.parameters())
    cfg = TrainConfig(epochs=8, batch_size=16, lr=0.02, instances=0, pad=0, flip=False, progress=False,
                      warmup_epochs=0, log_every=1, optimizer="adamw", weight_decay=0.0)
    Trainer(student, objective, data, cfg, tmp_path, param_groups=[{"params": params}]).fit()
    values = [json.loads(ln)[label] for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum(values[-4:]) < sum(values[:4]), values


def test_cdd_block_term_of_a_student_equal_to_its_teacher_is_zero_and_projects_narrower_students():
    torch.manual_seed(0)
    teacher = RetrievalNet("tiny_resnet", num_classes=4, backbone_kwargs={"width": 16}).eval()
    same = RetrievalNet("tiny_resnet", num_classes=4, backbone_kwargs={"width": 16})
    same.load_state_dict(teacher.state_dict())
    x = torch.randn(4, 3, 16, 16)
    spec = parse_spec("cdd_block@backbone.layer1+backbone.layer2")
    objective = DistillObjective(spec, same.eval(), Teacher(teacher), x)
    with torch.no_grad():
        terms = objective(same(x), Teacher(teacher)(x))
    assert float(next(iter(terms.values()))) == 0.0
    narrow, _ = _nets()
    objective = DistillObjective(spec, narrow, Teacher(teacher), x)  # 8 channels against 16: projected
    assert float(next(iter(objective(narrow(x), Teacher(teacher)(x)).values()))) > 0
