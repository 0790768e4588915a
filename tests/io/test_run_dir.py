"""Run directories, weights loading and their errors."""

import subprocess
import sys

import pytest
import torch
import torchvision

import capdist
from capdist.errors import CheckpointError, OutputExists
from capdist.io import load_weights, prepare_out_dir, save_run
from capdist.models import RetrievalNet


def test_load_rebuilds_model_without_pickle(tmp_path):
    net = RetrievalNet("tiny_resnet", num_classes=5).eval()
    save_run(tmp_path, net, {"model": net.spec})
    x = torch.randn(2, 3, 16, 16)
    back = capdist.load(tmp_path)
    with torch.no_grad():
        assert torch.equal(back(x)["embedding"], net(x)["embedding"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_torchvision_state_dict_loads_into_backbone(tmp_path):
    tv = torchvision.models.resnet18(num_classes=1000)
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    net = RetrievalNet("resnet18", num_classes=3)
    load_weights(net, tmp_path / "r18.pth", prefix="backbone")
    assert torch.equal(net.backbone.conv1.weight, tv.conv1.weight)


def test_mismatched_checkpoint_names_first_keys(tmp_path):
    other = RetrievalNet("resnet18", num_classes=3)
    save_run(tmp_path, other, {"model": {"backbone": "tiny_resnet", "num_classes": 3}})
    with pytest.raises(CheckpointError, match="do not fit RetrievalNet.*(missing|unexpected|shape)"):
        capdist.load(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "capdist", "eval", "--model", str(tmp_path), "--data",
                           "digits"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "another architecture" in proc.stderr


def test_corrupt_and_pickled_checkpoints_are_refused(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_weights(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_weights(torch.nn.Linear(2, 2), tmp_path / "model.pt")


def test_non_empty_output_directory_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("results")
    with pytest.raises(OutputExists, match="--resume.*--overwrite"):
        prepare_out_dir(tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "results"
