"""One schedule protocol: a new schedule is one file and one table row, and compress never asks which."""

import json

import pytest
import torch

from capdist.compactor import SCHEDULES, ScheduleConfig
from capdist.engine import TrainConfig
from capdist.io import save_run
from capdist.methods import CompressConfig, RunOptions, compress
from capdist.models import RetrievalNet


class HalveFirstGroup:
    """A toy schedule: at its first step it masks half of the first group's units."""

    needs_features = False

    def __init__(self, cm, target):
        self.cm, self.target, self.steps = cm, target, 0

    def step(self, features=None) -> bool:
        self.steps += 1
        if self.steps != 1:
            return False
        group = self.cm.groups[0]
        keep = torch.ones(group.spec.period, dtype=torch.bool)
        keep[: group.spec.period // 2] = False
        group.set_mask(group.units_to_mask(keep))
        return True

    def complete(self) -> None:
        pass

    def report(self) -> dict:
        return {"toy": {"steps": self.steps}}

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]


def test_a_third_schedule_is_one_table_row(tmp_path, monkeypatch):
    before = list(SCHEDULES)
    monkeypatch.setitem(SCHEDULES, "toy", lambda cm, target, config, timing, budget: HalveFirstGroup(cm, target))
    assert ScheduleConfig.__dataclass_fields__["kind"].metadata["choices"]() == [*before, "toy"]
    torch.manual_seed(0)
    net = RetrievalNet("tiny_resnet", num_classes=10, backbone_kwargs={"width": 8})
    save_run(tmp_path / "teacher", net, {"model": net.spec})
    cfg = CompressConfig.of(schedule="toy", scope="internal", latency_repeats=1,
                            train=TrainConfig(epochs=2, batch_size=32, lr=0.05, progress=False, warmup_epochs=0))
    report = compress(str(tmp_path / "teacher"), "digits", cfg, tmp_path / "out", RunOptions(train_subset=128))
    steps = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert report["toy"] == {"steps": max(r.get("step", 0) for r in steps)}, "stepped once per optimizer step"
    assert report["flops_fraction"] < 1.0, "the toy's mask reached the surgery"


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "ranked_by"), [("contribution", "retrieval contribution"),
                                                 ("taylor", "first-order Taylor importance")])
def test_a_ranking_schedule_compresses_to_the_target_and_says_how_it_ranked(tmp_path, kind, ranked_by):
    net = RetrievalNet("tiny_resnet", num_classes=10, backbone_kwargs={"width": 8})
    save_run(tmp_path / "teacher", net, {"model": net.spec})
    cfg = CompressConfig.of(schedule=kind, target_flops=0.5, latency_repeats=1,
                            train=TrainConfig(epochs=2, batch_size=32, lr=0.05, progress=False, warmup_epochs=0))
    report = compress(str(tmp_path / "teacher"), "digits", cfg, tmp_path / "out", RunOptions(train_subset=320))
    assert report["flops_fraction"] <= 0.5 + 1e-6 and report["method"].startswith(f"cdd-{kind}")
    assert report["mask_ranking"]["by"] == ranked_by
