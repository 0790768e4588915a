"""Timing back-ends for the runtimes models are deployed in: ONNX Runtime and OpenVINO (CPU).

Each prepares a module once (exported to ONNX in memory, then an inference session or a compiled
OpenVINO model with the requested threads) and times its ``run`` call with ``torch.utils.benchmark``,
so a figure here and an eager one come from the same statistics. Both runtimes are optional
packages: a missing one is one error naming its install command, raised when the timer is built.

Example:
    >>> import torch
    >>> timer = OnnxRuntimeTimer(threads=1)  # doctest: +SKIP
    >>> timer.prepare(torch.nn.Conv2d(3, 4, 3).eval(), torch.randn(1, 3, 8, 8)).mean_ms(2) > 0  # doctest: +SKIP
    True
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CapdistError
from .call_timing import CallTiming


class RuntimeMissing(CapdistError, ImportError):
    """A timing back-end whose runtime package is not installed."""


def onnx_bytes(module: nn.Module, x: torch.Tensor) -> bytes:
    """``module`` exported to ONNX for inputs shaped like ``x`` (fixed shape: timing needs no other)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), buffer, dynamo=False, input_names=["images"],
                          output_names=["output"])
    return buffer.getvalue()


class OnnxRuntimeTimer:
    """ONNX Runtime on the CPU execution provider, all graph optimisations, ``threads`` intra-op threads.

    Args:
        threads: intra-op threads of the session (default: torch's setting when built).
    """

    name = "onnxruntime"

    def __init__(self, threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise RuntimeMissing("the onnxruntime back-end needs onnxruntime: pip install 'capdist[export]'") from None
        self._ort = onnxruntime
        self.threads = threads or torch.get_num_threads()

    def describe(self, x: torch.Tensor) -> dict[str, Any]:
        return {"runtime": f"onnxruntime {self._ort.__version__} (CPU)", "threads": self.threads,
                "batch": int(x.shape[0]), "precision": "float32"}

    def session(self, model: bytes | str):
        """An inference session on ``model`` (ONNX bytes or a file) with this timer's settings."""
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return self._ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def prepare(self, module: nn.Module, x: torch.Tensor):
        if x.device.type != "cpu":
            raise CapdistError("the onnxruntime back-end times on the CPU; run with --device cpu")
        session = self.session(onnx_bytes(module, x))
        feed = {session.get_inputs()[0].name: x.numpy()}
        return CallTiming(lambda: session.run(None, feed))


class OpenVinoTimer:
    """OpenVINO on the CPU plug-in, latency mode, ``threads`` inference threads, float32 inference
    precision (the plug-in's default may run bf16 or f16 on CPUs that have them).

    Args:
        threads: inference threads (default: torch's setting when built).
        precision: OpenVINO's ``INFERENCE_PRECISION_HINT`` (``f32``; ``bf16`` / ``f16`` where supported).
    """

    name = "openvino"

    def __init__(self, threads: int | None = None, precision: str = "f32") -> None:
        try:
            import openvino
        except ImportError:
            raise RuntimeMissing("the openvino back-end needs OpenVINO: pip install 'capdist[openvino]'") from None
        self._ov = openvino
        self.threads = threads or torch.get_num_threads()
        self.precision = precision

    def describe(self, x: torch.Tensor) -> dict[str, Any]:
        precision = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}.get(self.precision, self.precision)
        return {"runtime": f"openvino {self._ov.__version__.split('-')[0]} (CPU)", "threads": self.threads,
                "batch": int(x.shape[0]), "precision": precision}

    def compile(self, model: bytes | str):
        """``model`` (ONNX bytes, or an ONNX / IR file) compiled for the CPU with this timer's settings."""
        core = self._ov.Core()
        read = core.read_model(model) if isinstance(model, str) else core.read_model(model=model)
        return core.compile_model(read, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": self.threads,
                                                "INFERENCE_PRECISION_HINT": self.precision})

    def prepare(self, module: nn.Module, x: torch.Tensor):
        if x.device.type != "cpu":
            raise CapdistError("the openvino back-end times on the CPU; run with --device cpu")
        compiled = self.compile(onnx_bytes(module, x))
        request = compiled.create_infer_request()
        array = np.ascontiguousarray(x.numpy())
        return CallTiming(lambda: request.infer({0: array}))
