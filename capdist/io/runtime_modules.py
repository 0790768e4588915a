"""Deployment runtimes behind one construction each, and an exported file run by its runtime behind
an ``nn.Module`` interface, so the same retrieval evaluation measures the file that ships: ONNX Runtime
(an ``.onnx`` file) and OpenVINO (an ``.onnx`` or ``.xml`` IR file), both on the CPU. The latency
timers of :mod:`capdist.measure.runtimes` build their sessions here too, ONNX Runtime's CUDA and
TensorRT providers among them."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CapdistError


class RuntimeNotInstalled(CapdistError, ImportError):
    """The runtime a file needs is not installed."""


def onnxruntime_module():
    """``onnxruntime``, or one error naming its install command."""
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeNotInstalled("onnxruntime is not installed: pip install 'capdist[export]' "
                                  "(or onnxruntime-gpu)") from None
    return onnxruntime


def openvino_module():
    """``openvino``, or one error naming its install command."""
    try:
        import openvino
    except ImportError:
        raise RuntimeNotInstalled("OpenVINO is not installed: pip install 'capdist[openvino]'") from None
    return openvino


def onnx_session(model: bytes | str | Path, threads: int | None = None, spinning: bool = True,
                 providers: list | None = None):
    """An ONNX Runtime session (all graph optimisations, ``threads`` intra-op threads, one inter-op
    thread) for ONNX bytes or a file, on the CPU provider unless ``providers`` says otherwise; without
    ``spinning`` its threads sleep between runs instead of spin-waiting (several sessions timed in turn
    then do not steal each other's cores)."""
    ort = onnxruntime_module()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=providers or ["CPUExecutionProvider"])


GPU_PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def require_gpu_provider(provider: str) -> str:
    """The ONNX Runtime execution provider named by ``provider`` (``cuda`` or ``tensorrt``), or one
    error naming the package that brings it."""
    wanted = GPU_PROVIDERS[provider]
    if wanted not in onnxruntime_module().get_available_providers():
        extra = " and TensorRT's libraries" if provider == "tensorrt" else ""
        raise RuntimeNotInstalled(f"this onnxruntime has no {wanted}: install onnxruntime-gpu{extra} "
                                  "(in place of onnxruntime) on a machine with CUDA")
    return wanted


def onnx_gpu_session(model: bytes | str | Path, provider: str, device_id: int = 0):
    """An ONNX Runtime session on CUDA GPU ``device_id`` through ``provider`` (``cuda``, or ``tensorrt``
    with CUDA for the nodes TensorRT does not take), or one error saying what is missing: ONNX Runtime
    falls back to the CPU without failing, so the session's own provider list is checked too."""
    wanted = require_gpu_provider(provider)
    cuda = ("CUDAExecutionProvider", {"device_id": device_id, "use_tf32": 0})  # float32 as reported
    chain = [(wanted, {"device_id": device_id}), cuda] if provider == "tensorrt" else [cuda]
    onnxruntime_module().set_default_logger_severity(3)
    # a fallback's warnings and banner: the error below says it in one line
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        session = onnx_session(model, spinning=False, providers=chain)
    if session.get_providers()[0] != wanted:
        raise CapdistError(f"ONNX Runtime could not start {wanted} here (it fell back to "
                           f"{session.get_providers()[0]}); check the CUDA{' and TensorRT' * (provider == 'tensorrt')} "
                           "libraries onnxruntime-gpu needs")
    return session


def openvino_compiled(model: bytes | str | Path, precision: str = "f32", threads: int | None = None):
    """ONNX bytes, or an ONNX / IR file, compiled for OpenVINO's CPU plug-in in latency mode at the
    inference precision ``precision`` (``f32`` by default: the plug-in's own default may be bf16 or f16)."""
    ov = openvino_module()
    core = ov.Core()
    read = core.read_model(model=model) if isinstance(model, bytes) else core.read_model(str(model))
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision,
              **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
    return core.compile_model(read, "CPU", config)


class _BatchedRuntime(nn.Module):
    """Feeds ``run`` (one call of a runtime on an array) in slices of the file's fixed batch when it has one."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], fixed_batch: int | None) -> None:
        super().__init__()
        self._call, self.fixed_batch = run, fixed_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().cpu().float()
        n = self.fixed_batch or len(x)
        outs = [self._call(np.ascontiguousarray(x[i:i + n].numpy())) for i in range(0, len(x), n)]
        return torch.from_numpy(np.concatenate(outs)).float()


class OnnxModule(_BatchedRuntime):
    """Runs an ONNX file with ONNX Runtime's CPU provider."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        session = onnx_session(path, threads)
        name, batch = session.get_inputs()[0].name, session.get_inputs()[0].shape[0]
        super().__init__(lambda x: session.run(None, {name: x})[0], batch if isinstance(batch, int) else None)
        self.session = session


class OpenVinoModule(_BatchedRuntime):
    """Runs an ONNX or OpenVINO IR file with OpenVINO's CPU plug-in (see :func:`openvino_compiled`)."""

    def __init__(self, path: str | Path, precision: str = "f32", threads: int | None = None) -> None:
        compiled = openvino_compiled(path, precision, threads)
        batch = compiled.inputs[0].get_partial_shape()[0]
        super().__init__(lambda x: compiled({0: x})[0], None if batch.is_dynamic else batch.get_length())
        self.compiled = compiled
