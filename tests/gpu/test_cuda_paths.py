"""Every command on ``--device cuda`` end to end on tiny data, and the schedules and surgery with
compactors on the GPU (skipped where CUDA is absent)."""

import json
import subprocess
import sys

import pytest
import torch

from capdist.compactor import CompactorConfig, NormSchedule, RetrievalSchedule, attach, surgery
from capdist.testing import TinyResNet

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _capdist(*args):
    proc = subprocess.run([sys.executable, "-m", "capdist", *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.parametrize("schedule", ["norm", "retrieval"])
def test_schedules_and_surgery_with_compactors_on_the_gpu(schedule):
    dev = torch.device("cuda")
    model = TinyResNet(in_channels=3, width=8).to(dev)
    x = torch.randn(8, 3, 16, 16, device=dev)
    cm = attach(model, x[:1], CompactorConfig(scope="all"))
    with torch.no_grad():
        for c in cm.compactors():
            c.weight.mul_(torch.rand(c.weight.shape[0], device=dev).view(-1, *([1] * (c.weight.dim() - 1))))
    if schedule == "norm":
        NormSchedule(cm, target=0.5).update(limit=10**9)
    else:
        sched = RetrievalSchedule(cm, 0.5, warmup=0, interval=1, deadline=2)
        feats = {g.name: torch.randn(8, g.channels, device=dev) for g in cm.groups}
        for _ in range(3):
            sched.observe(feats, feats)
        sched.top_up()
    assert cm.flops() <= 0.5 * cm.original_flops * (1 + 1e-6)
    assert all(c.mask.device.type == "cuda" for c in cm.compactors())
    res = surgery(cm, x)
    assert next(res.model.parameters()).device.type == "cuda"
    assert res.rel_diff < 1e-4


def test_every_command_runs_on_cuda(tmp_path):
    teacher, cdd, pruned = tmp_path / "t", tmp_path / "c", tmp_path / "p"
    common = ["--data", "digits", "--device", "cuda", "--batch-size", "32"]
    _capdist("train", "--model", "tiny_resnet", *common, "--epochs", "1", "--amp", "bf16", "--channels-last",
             "--out", teacher)
    _capdist("eval", "--model", teacher, "--data", "digits", "--device", "cuda", "--flip-test")
    for schedule in ("retrieval", "norm"):
        _capdist("compress", "--teacher", teacher, *common, "--epochs", "2", "--mask-warmup", "0.5",
                 "--finetune-epochs", "1", "--amp", "fp16", "--schedule", schedule, "--target-flops", "0.5",
                 "--out", cdd / schedule)
        report = json.loads((cdd / schedule / "report.json").read_text())
        assert report["flops_fraction"] <= 0.5 + 1e-6
        assert report["models"][0]["latency_device"].startswith("cuda")
    _capdist("prune", "--model", teacher, "--method", "magnitude", *common, "--finetune-epochs", "1",
             "--target-flops", "0.5", "--out", pruned)
    _capdist("export", cdd / "norm", "--format", "onnx", "--out", tmp_path / "m.onnx")
    _capdist("report", cdd / "norm", pruned, "--retime", teacher, "--device", "cuda", "--out", tmp_path / "cmp")
    _capdist("profile", "tiny_resnet", "--input-size", "3,16,16", "--device", "cuda")
