"""The deployment runtimes behind the timer seam: ONNX Runtime and OpenVINO time the exported model
(the same numbers as PyTorch), report which runtime and precision they measured, and a missing
runtime is one error raised before anything is written."""

import importlib.util
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from capdist.cli.main import main
from capdist.errors import CapdistError
from capdist.io import runtime_modules
from capdist.io.runtime_modules import RuntimeNotInstalled, onnx_gpu_session, onnx_session
from capdist.measure import TIMERS, get_timer, measure_latency, time_side_by_side
from capdist.measure.runtimes import OnnxRuntimeTimer, OpenVinoTimer, onnx_bytes
from capdist.measure.timer import GPU_TIMERS, check_timer
from capdist.testing import TinyResNet

SIZE = (3, 16, 16)
runtimes = pytest.mark.skipif(not all(importlib.util.find_spec(p) for p in ("onnxruntime", "openvino")),
                              reason="needs onnxruntime and openvino (capdist[export,openvino])")


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = TinyResNet(width=8).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics, so folding them is checked too
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net


@runtimes
def test_both_runtimes_are_rows_of_the_table_and_describe_what_they_measured():
    assert {"eager", "onnxruntime", "openvino"} <= set(TIMERS)
    x = torch.randn(2, *SIZE)
    ort, ov = get_timer("onnxruntime", threads=1), get_timer("openvino", threads=1)
    assert isinstance(ort, OnnxRuntimeTimer) and isinstance(ov, OpenVinoTimer)
    assert ort.describe(x)["runtime"].startswith("onnxruntime ") and ort.describe(x)["threads"] == 1
    assert ov.describe(x) | {"runtime": "-"} == {"runtime": "-", "threads": 1, "batch": 2, "precision": "float32"}


@runtimes
def test_the_sessions_the_runtimes_time_compute_what_pytorch_computes():
    """What is timed is the model itself: the session / compiled model built from the in-memory export
    gives PyTorch's output (float32 in both runtimes: OpenVINO's reduced-precision default is overridden)."""
    net, x = _net(), torch.randn(2, *SIZE)
    with torch.no_grad():
        expected = net(x).numpy()
    model = onnx_bytes(net, x)
    ort_out = onnx_session(model, threads=1).run(None, {"images": x.numpy()})[0]
    ov_out = OpenVinoTimer(threads=1).compile(model)({0: x.numpy()})[0]
    scale = np.abs(expected).max()
    assert np.abs(ort_out - expected).max() <= 1e-5 * scale
    assert np.abs(ov_out - expected).max() <= 1e-4 * scale


@runtimes
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_side_by_side_and_single_latency_run_in_the_runtime(backend):
    big, small = nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(3, 2, 3, padding=1)
    t = time_side_by_side({"big": big, "small": small}, (3, 64, 64), batch_sizes=(1,), rounds=3, repeats=3,
                          reference="big", timer=backend)
    # 32 times the multiply-adds (7 M against 0.2 M): a ratio near 1 would mean the same thing was timed
    assert t["big"]["b1"]["ratio"] == 1.0 and 0 < t["small"]["b1"]["ratio"] < 0.9
    assert t["small"]["runtime"].startswith(backend) and t["small"]["precision"] == "float32"
    r = measure_latency(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), SIZE, repeats=3, warmup=1, breakdown=True,
                        timer=backend)
    assert r.runtime.startswith(backend) and 0 < r.p50_ms <= r.p90_ms and set(r.layers_ms) == {"0", "1"}


def test_a_missing_runtime_is_one_error_naming_its_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(RuntimeNotInstalled, match=r"pip install 'capdist\[openvino\]'") as caught:
        get_timer("openvino")
    assert isinstance(caught.value, CapdistError) and "\n" not in str(caught.value)
    with pytest.raises(CapdistError, match="times on the CPU"):
        check_timer("onnxruntime", "cuda")


@pytest.mark.parametrize("command", [
    ["compress", "--teacher", "tiny_resnet", "--data", "digits", "--epochs", "1"],
    ["prune", "--model", "tiny_resnet", "--data", "digits"],
])
def test_compress_and_prune_refuse_a_missing_runtime_before_writing(tmp_path, capsys, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "openvino", None)
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["capdist", *command, "--latency-backend", "openvino", "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1 and "capdist[openvino]" in lines[0]
    assert not out.exists()


@pytest.mark.skipif(not importlib.util.find_spec("onnxruntime"), reason="needs onnxruntime")
def test_the_gpu_providers_refuse_a_cpu_a_missing_provider_and_a_silent_fallback(monkeypatch):
    """ONNX Runtime's CUDA and TensorRT providers are back-ends of their own; where they cannot run, each
    says why in one line, including when ONNX Runtime would quietly run the session on the CPU instead."""
    import onnxruntime

    assert set(GPU_TIMERS) <= set(TIMERS)
    for name in GPU_TIMERS:
        with pytest.raises(CapdistError, match="times on a CUDA GPU"):
            check_timer(name, "cpu")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(RuntimeNotInstalled, match="no TensorrtExecutionProvider: install onnxruntime-gpu and Tens"):
        get_timer("onnxruntime-tensorrt")
    # a build that lists the provider but cannot start it falls back to the CPU: that is refused too
    # (the session is replaced by one that fell back, so the case holds on a machine where CUDA works)
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(runtime_modules, "onnx_session",
                        lambda *_, **__: SimpleNamespace(get_providers=lambda: ["CPUExecutionProvider"]))
    model = onnx_bytes(nn.Conv2d(3, 4, 3).eval(), torch.randn(1, *SIZE))
    with pytest.raises(CapdistError, match="could not start CUDAExecutionProvider here"):
        onnx_gpu_session(model, "cuda")


def test_compress_refuses_a_gpu_runtime_on_the_cpu_before_writing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["capdist", "compress", "--teacher", "tiny_resnet", "--data", "digits",
                                      "--epochs", "1", "--device", "cpu", "--latency-backend",
                                      "onnxruntime-tensorrt", "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1 and "times on a CUDA GPU" in lines[0]
    assert not out.exists()
