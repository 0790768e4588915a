"""ONNX Runtime's CUDA and TensorRT providers as latency back-ends, on a GPU (skipped where CUDA or
the provider is absent): the session computes what PyTorch computes, and side-by-side timings rank a
model 32 times larger above a small one."""

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from capdist.measure import measure_latency, time_side_by_side

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _starts(backend: str) -> str | None:
    """Why ``backend`` cannot run here (None: it can): onnxruntime-gpu lists its providers whether or
    not the CUDA / TensorRT libraries they need are installed, so a session is started to find out."""
    if not importlib.util.find_spec("onnxruntime"):
        return "needs onnxruntime-gpu"
    from capdist.errors import CapdistError
    from capdist.measure.timer import check_timer

    try:
        check_timer(backend, "cuda")
    except CapdistError as err:
        return str(err)
    return None


@pytest.mark.parametrize("backend, provider", [("onnxruntime-cuda", "CUDAExecutionProvider"),
                                               ("onnxruntime-tensorrt", "TensorrtExecutionProvider")])
def test_a_gpu_provider_times_the_model_it_was_given(backend, provider):
    reason = _starts(backend)
    if reason:
        pytest.skip(reason)
    from capdist.io.runtime_modules import onnx_gpu_session
    from capdist.measure.runtimes import onnx_bytes

    torch.manual_seed(0)
    net, x = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU()).eval(), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = net(x).numpy()
    session = onnx_gpu_session(onnx_bytes(net, x), backend.removeprefix("onnxruntime-"))
    assert session.get_providers()[0] == provider
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(out - expected).max() <= 1e-3 * np.abs(expected).max()
    big, small = nn.Conv2d(3, 256, 3, padding=1), nn.Conv2d(3, 8, 3, padding=1)
    t = time_side_by_side({"big": big, "small": small}, (3, 128, 128), batch_sizes=(8,), rounds=3, repeats=5,
                          reference="big", device="cuda", timer=backend)
    assert t["small"]["b8"]["ratio"] < 0.9 and t["small"]["runtime"].startswith("onnxruntime ")
    r = measure_latency(nn.Conv2d(3, 8, 3), (3, 32, 32), repeats=3, warmup=1, device="cuda", timer=backend)
    assert r.runtime.endswith("(CUDA)" if provider.startswith("CUDA") else "(TensorRT)") and r.p50_ms > 0
