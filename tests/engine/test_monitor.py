"""Periodic evaluation, the best weights and TensorBoard scalars of a training run."""

import json

import pytest
from safetensors.torch import load_file

from capdist.data import open_dataset
from capdist.engine import TrainConfig
from capdist.engine.evaluation import evaluate_models
from capdist.methods import train_retrieval
from capdist.models import RetrievalNet


def test_eval_every_logs_each_epoch_keeps_the_best_weights_and_writes_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard not installed (capdist[tensorboard])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, progress=False, eval_every=1, tensorboard=True)
    train_retrieval("tiny_resnet", "digits", cfg, out, train_subset=320, device="cpu",
                    backbone_kwargs={"width": 8})
    evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval_mAP" in r]
    assert [r["epoch"] for r in evals] == [1.0, 2.0, 3.0]
    best = max(evals, key=lambda r: r["eval_mAP"])
    config = json.loads((out / "config.json").read_text())
    assert config["best_eval"]["mAP"] == best["eval_mAP"] and config["best_eval"]["epoch"] == best["epoch"]
    assert config["eval"]["mAP"] == pytest.approx(evals[-1]["eval_mAP"])  # the last epoch's model is delivered
    net = RetrievalNet("tiny_resnet", num_classes=10, backbone_kwargs={"width": 8})
    net.load_state_dict(load_file(str(out / "best.safetensors")))
    assert evaluate_models(net, open_dataset("digits"))["mAP"] == pytest.approx(best["eval_mAP"], abs=1e-6)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("eval/mAP")] == pytest.approx([r["eval_mAP"] for r in evals])
    assert "loss" in events.Tags()["scalars"]


def test_tensorboard_missing_is_refused_when_the_config_is_made(monkeypatch):
    import sys

    from capdist.errors import CapdistError

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(CapdistError, match=r"pip install 'capdist\[tensorboard\]'"):
        TrainConfig(tensorboard=True)
