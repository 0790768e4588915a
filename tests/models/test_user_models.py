"""A user's own model and checkpoint, compressed from the CLI and from Python, reloaded as the user's class."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from capdist.errors import CheckpointError, UnsupportedModel
from capdist.io.checkpoints import read_state_dict
from capdist.io.sources import open_model
from capdist.io.weights import fit_keys
from capdist.models.view import RetrievalView

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import user_models  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
SELECT = {"tensor": None, "dict": "emb", "tuple": 1}


def _trained(out: str) -> torch.nn.Module:
    """A few SGD steps of triplet-free regression so the weights are not the initialisation."""
    torch.manual_seed(0)
    model = user_models.build(out=out)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        y = model(torch.randn(8, 3, 16, 16))
        emb = y if out == "tensor" else (y["emb"] if out == "dict" else y[1])
        loss = (emb - 1).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _save(model: torch.nn.Module, fmt: str, path: Path) -> Path:
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        path = path / "w.safetensors"
        save_file(state, str(path))
    elif fmt == "torchreid":
        path = path / "model.pth.tar-3"
        torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 3,
                    "rank1": np.float64(0.81), "mAP": np.float32(0.62), "optimizer": {"state": {}}}, path)
    else:
        path = path / "model_final.pth"
        torch.save({"model": state, "iteration": 100, "scheduler": {"last_epoch": np.int64(3)}}, path)
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("fmt", ["safetensors", "torchreid", "fastreid"])
@pytest.mark.parametrize("out", ["tensor", "dict", "tuple"])
def test_every_container_loads_into_the_users_own_class(tmp_path, fmt, out):
    model = _trained(out)
    path = _save(model, fmt, tmp_path)
    opened = open_model("user_models:build", str(path), {"out": out}, 10, SELECT[out])
    assert isinstance(opened.model, RetrievalView) and type(opened.model.model) is user_models.UserReID
    assert "used as is" in opened.note and opened.source["wrapped"] is False
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
        got = opened.model(x)["embedding"]
    ref = ref if out == "tensor" else (ref["emb"] if out == "dict" else ref[1])
    assert torch.equal(got, ref)


@pytest.mark.parametrize("container", ["plain", "torchreid", "fastreid"])
def test_a_malicious_pickle_in_any_container_is_refused_and_never_runs(tmp_path, container):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    state = {"w": torch.ones(1)}
    obj = {"plain": {"w": torch.ones(1), "x": evil},
           "torchreid": {"state_dict": state, "rank1": np.float64(0.5), "hook": evil},
           "fastreid": {"model": state, "optimizer": evil}}[container]
    torch.save(obj, tmp_path / "ckpt.pth")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        read_state_dict(tmp_path / "ckpt.pth")
    assert not marker.exists()


def test_prefixes_are_mapped_and_a_torchvision_state_dict_fits_retrieval_net(tmp_path):
    import torchvision

    from capdist.models import RetrievalNet

    tv = torchvision.models.resnet18(num_classes=1000)
    torch.save({"state_dict": {"_orig_mod." + k: v for k, v in tv.state_dict().items()}}, tmp_path / "r18.pth")
    opened = open_model("resnet18", str(tmp_path / "r18.pth"), num_classes=10)
    assert isinstance(opened.model, RetrievalNet) and "added 'backbone.'" in opened.note
    assert torch.equal(opened.model.backbone.conv1.weight, tv.conv1.weight)
    net = user_models.build()
    fit = fit_keys(net, {"encoder." + k: v for k, v in net.state_dict().items()})
    assert fit.exact and fit.strip == "encoder."


def test_a_dropped_head_needs_allow_partial_and_is_listed(tmp_path):
    model = user_models.build()
    state = dict(model.state_dict())
    state["classifier.weight"] = torch.zeros(751, 16)
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected 1: classifier.weight.*best mapping"):
        open_model("user_models:build", str(tmp_path / "w.safetensors"))
    opened = open_model("user_models:build", str(tmp_path / "w.safetensors"), allow_partial=True)
    assert "1 checkpoint tensors dropped (classifier.weight)" in opened.note


def test_factory_errors_are_one_clear_message():
    with pytest.raises(UnsupportedModel, match="needs_classes.*failed with no arguments.*num_classes"):
        open_model("user_models:needs_classes")
    assert open_model("user_models:needs_classes", args={"num_classes": 8}).model.model.proj.out_features == 8
    with pytest.raises(UnsupportedModel, match="returned a int, not a torch.nn.Module"):
        open_model("user_models:not_a_model")
    with pytest.raises(UnsupportedModel, match="cannot import model factory"):
        open_model("no_such_module_xyz:build")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "capdist", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize(("out", "fmt"), [("tensor", "safetensors"), ("dict", "torchreid"), ("tuple", "fastreid")])
def test_cli_compresses_a_user_model_reloads_it_as_the_users_class_and_exports(tmp_path, out, fmt):
    path = _save(_trained(out), fmt, tmp_path)
    run = tmp_path / "run"
    args = ["compress", "--teacher", "user_models:build", "--weights", str(path), "--teacher-arg", f"out={out}",
            "--data", "digits", "--target-flops", "0.5", "--epochs", "2", "--train-subset", "320",
            "--batch-size", "32", "--test-subset", "200", "--out", str(run)]
    if SELECT[out] is not None:
        args += ["--embedding-output", str(SELECT[out])]
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "user_models:build used as is (UserReID)" in proc.stderr
    report = json.loads((run / "report.json").read_text())
    assert report["flops_fraction"] <= 0.5
    assert set(report["loss_terms"]) == {"triplet", "ce", "emb_mse", "cdd_block", "penalty"}
    config = json.loads((run / "config.json").read_text())
    assert config["source"]["spec"] == "user_models:build" and config["source"]["args"] == {"out": out}
    pick = {"tensor": "o", "dict": "o['emb']", "tuple": "o[1]"}[out]
    code = ("import capdist, torch, sys, user_models; from safetensors.torch import load_file\n"
            f"s = load_file('{run}/sample.safetensors'); m = capdist.load('{run}')\n"
            "assert type(m) is user_models.UserReID, type(m)\n"
            f"with torch.no_grad(): o = m(s['images'])\n"
            f"sys.exit(0 if torch.equal({pick}, s['embedding']) else 1)")
    assert subprocess.run([sys.executable, "-c", code], env=ENV).returncode == 0
    proc = _cli("export", str(run), "--format", "onnx")
    assert proc.returncode == 0, proc.stderr
    diff = re.search(r"max \|file - pytorch\| = (\S+) ", proc.stdout)
    assert diff and float(diff.group(1)) <= 1e-4, proc.stdout


@pytest.mark.slow
def test_cli_refuses_bad_factories_and_foreign_weights_in_one_line(tmp_path):
    save_file({"fc.weight": torch.zeros(3, 3)}, str(tmp_path / "other.safetensors"))
    base = ["compress", "--data", "digits", "--epochs", "1"]
    cases = [(["--teacher", "user_models:needs_classes"], "failed with no arguments"),
             (["--teacher", "user_models:not_a_model"], "not a torch.nn.Module"),
             (["--teacher", "user_models:build", "--weights", str(tmp_path / "other.safetensors")],
              "do not fit UserReID")]
    for i, (extra, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        proc = _cli(*base, *extra, "--out", str(out))
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
        assert not out.exists()


@pytest.mark.slow
def test_python_api_compresses_a_module_in_hand_and_returns_its_class(tmp_path):
    import capdist
    from capdist.data import open_dataset

    digits = open_dataset("digits")
    train = torch.utils.data.Subset(digits.train, range(320))
    test = torch.utils.data.TensorDataset(digits.query.images[:200], digits.query.pids[:200])
    model = _trained("tuple")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = capdist.compress(model, train, target_flops=0.5, test_data=test, epochs=2, batch_size=32,
                              embedding_output=1, out=tmp_path / "api")
    assert type(result.model) is user_models.UserReID
    assert result.report["flops_fraction"] <= 0.5 and result.plan["groups"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input is untouched
    again = capdist.load(tmp_path / "api", model=user_models.build(out="tuple"))
    x = digits.query.images[:4]
    with torch.no_grad():
        assert torch.equal(again(x)[1], result.model(x)[1])
    with pytest.raises(CheckpointError, match="fresh instance"):
        capdist.load(tmp_path / "api")
