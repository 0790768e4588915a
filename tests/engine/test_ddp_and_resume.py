"""DDP with two CPU processes, SIGKILL + resume, and the NaN guard."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from capdist.engine import TrainConfig, Trainer
from capdist.errors import TrainingDiverged
from capdist.testing import ddp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    """Ranks load with a worker each, the single process without: the same augmented batches."""
    mp.spawn(ddp.worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    single = ddp.plain_net()
    Trainer(single, ddp.objective, ddp.toy_set(), ddp.config(), tmp_path / "single").fit()
    for k, v in single.state_dict().items():
        assert torch.equal(r0[k], r1[k]), k
        assert torch.allclose(r0[k], v, atol=1e-5), k
    assert not torch.equal(r0["4.weight"], ddp.plain_net().state_dict()["4.weight"])


def _train_cmd(out, *extra):
    return [sys.executable, "-m", "capdist", "train", "--model", "tiny_resnet", "--data", "digits",
            "--epochs", "3", "--batch-size", "32", "--checkpoint-every", "10", "--out", str(out), *extra]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    full = tmp_path_factory.mktemp("full") / "run"
    subprocess.run(_train_cmd(full, "--random-erasing", "0.5"), check=True, capture_output=True, env=ENV)
    return load_file(full / "model.safetensors")


def _wait_for(cut: Path, min_step: int, proc) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        log = cut / "metrics.jsonl"
        if log.exists() and (min_step == 0 or ((cut / "checkpoint.pt").exists() and any(
                json.loads(ln)["step"] >= min_step for ln in log.read_text().splitlines() if ln.strip()))):
            return
        time.sleep(0.02)
    raise AssertionError("the run ended or stalled before the interruption point")


def _resumed_equals(cut: Path, uninterrupted: dict, *extra) -> None:
    subprocess.run(_train_cmd(cut, "--resume", "--random-erasing", "0.5", *extra), check=True,
                   capture_output=True, env=ENV)
    b = load_file(cut / "model.safetensors")
    assert uninterrupted.keys() == b.keys()
    for k in uninterrupted:
        assert torch.equal(uninterrupted[k], b[k]), k
    steps = [json.loads(ln)["step"] for ln in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, uninterrupted):
    """Killed with 2 loader workers, resumed with 1: the weights of a run with none, bit for bit."""
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_train_cmd(cut, "--workers", "2", "--random-erasing", "0.5"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    _wait_for(cut, 40, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "model.safetensors").exists()
    _resumed_equals(cut, uninterrupted, "--workers", "1")


@pytest.mark.slow
@pytest.mark.parametrize("min_step", [0, 20], ids=["before-first-checkpoint", "after-checkpoints"])
def test_ctrl_c_says_interrupted_exits_130_and_resumes_exactly(tmp_path, uninterrupted, min_step):
    cut = tmp_path / "cut"
    # a suite started in the background inherits an ignored SIGINT; the run gets the default, as from a terminal
    proc = subprocess.Popen(_train_cmd(cut, "--random-erasing", "0.5"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(cut, min_step, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-500:]
    assert err.replace("\r", "\n").strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in err and not (cut / "model.safetensors").exists()
    assert not any(p.name.endswith(".tmp") for p in cut.iterdir())
    _resumed_equals(cut, uninterrupted)


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tmp_path):
    model = ddp.plain_net()

    def objective(m, images, pids, step):
        loss = ddp.objective(m, images, pids, step)["loss"]
        return {"loss": loss * (float("nan") if step == 5 else 1.0)}

    cfg = TrainConfig(epochs=3, batch_size=16, instances=0, progress=False, checkpoint_every=2)
    with pytest.raises(TrainingDiverged, match="at step 5.*last good checkpoint"):
        Trainer(model, objective, ddp.toy_set(), cfg, tmp_path).fit()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())
