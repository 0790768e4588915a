"""A re-ID engineer's path on a generated Market-1501-style folder: train with the loader options,
re-run from the stored recipe, compress from a shipped recipe with flags overriding it."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from capdist.testing.folders import write_reid_folder

REPO = Path(__file__).resolve().parents[2]


def _capdist(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "capdist", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return write_reid_folder(tmp_path_factory.mktemp("data") / "market", train_ids=8, test_ids=4, per_id=8)


@pytest.fixture(scope="module")
def teacher(market, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    _capdist("train", "--model", "tiny_resnet", "--data", f"reid:{market}", "--image-size", "64x32",
             "--random-erasing", "0.5", "--pad", "4", "--workers", "2", "--epochs", "2", "--batch-size", "16",
             "--out", out)
    return out


@pytest.mark.slow
def test_train_on_a_reid_folder_stores_a_recipe_that_reruns_it_exactly(teacher, tmp_path):
    recipe = yaml.safe_load((teacher / "config.yaml").read_text())
    assert recipe["version"] == 1 and recipe["command"] == "train"
    assert recipe["image-size"] == "64x32" and recipe["random-erasing"] == 0.5 and recipe["workers"] == 2
    again = tmp_path / "again"
    _capdist("train", "--config", teacher / "config.yaml", "--out", again)
    a, b = load_file(teacher / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    rerun = yaml.safe_load((again / "config.yaml").read_text())
    assert {k: v for k, v in rerun.items() if k != "out"} == {k: v for k, v in recipe.items() if k != "out"}


@pytest.mark.slow
def test_compress_from_the_shipped_recipe_with_overrides(teacher, market, tmp_path):
    out = tmp_path / "cdd"
    _capdist("compress", "--config", REPO / "recipes" / "cdd-reid-compress.yaml", "--teacher", teacher,
             "--data", f"reid:{market}", "--image-size", "64x32", "--epochs", "2", "--mask-warmup", "0.5",
             "--device", "cpu", "--amp", "off", "--workers", "0", "--batch-size", "16", "--target-flops", "0.5",
             "--out", out)
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["pad"] == 10 and stored["random-erasing"] == 0.5 and stored["feature-loss"] == "block"
    assert stored["image-size"] == "64x32" and stored["epochs"] == 2 and stored["device"] == "cpu"
    report = yaml.safe_load((out / "report.json").read_text())
    assert report["flops_fraction"] <= 0.5 + 1e-6


@pytest.mark.slow
def test_resume_on_a_finished_run_changes_nothing_and_overwrite_clears(teacher, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in teacher.iterdir()}
    proc = _capdist("train", "--config", teacher / "config.yaml", "--resume", check=False)
    assert proc.returncode == 0 and "is finished" in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in teacher.iterdir()} == before
    run = tmp_path / "run"
    run.mkdir()
    (run / "plan.json").write_text("{}")
    (run / "report.json").write_text("{}")
    _capdist("train", "--model", "tiny_resnet", "--data", "digits", "--epochs", "1", "--train-subset", "64",
             "--batch-size", "16", "--out", run, "--overwrite")
    assert not (run / "plan.json").exists() and (run / "model.safetensors").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    proc = _capdist("train", "--model", "tiny_resnet", "--data", "digits", "--out", mine, "--overwrite", check=False)
    assert proc.returncode == 2 and "replaces capdist runs only" in proc.stderr
    assert (mine / "notes.txt").read_text() == "keep me"
