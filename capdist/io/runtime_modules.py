"""An exported file run by its deployment runtime behind an ``nn.Module`` interface, so the same
retrieval evaluation measures the file that ships: ONNX Runtime (an ``.onnx`` file) and OpenVINO
(an ``.onnx`` or ``.xml`` IR file), both on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CapdistError


class RuntimeNotInstalled(CapdistError, ImportError):
    """The runtime a file needs is not installed."""


class _BatchedRuntime(nn.Module):
    """Feeds a runtime in slices of its fixed batch when the file has one."""

    fixed_batch: int | None = None

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().cpu().float()
        n = self.fixed_batch or len(x)
        outs = [self._run(np.ascontiguousarray(x[i:i + n].numpy())) for i in range(0, len(x), n)]
        return torch.from_numpy(np.concatenate(outs)).float()


class OnnxModule(_BatchedRuntime):
    """Runs an ONNX file with ONNX Runtime's CPU provider."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeNotInstalled("onnxruntime is not installed: pip install 'capdist[export]' "
                                      "(or onnxruntime-gpu)") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        batch = self.session.get_inputs()[0].shape[0]
        self.fixed_batch = batch if isinstance(batch, int) else None

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


class OpenVinoModule(_BatchedRuntime):
    """Runs an ONNX or OpenVINO IR file with OpenVINO's CPU plug-in.

    Args:
        path: the ``.onnx`` or ``.xml`` file.
        precision: ``INFERENCE_PRECISION_HINT``: ``f32`` (the default here, so figures are not
            silently reduced-precision), or ``bf16`` / ``f16`` where the CPU has them.
    """

    def __init__(self, path: str | Path, precision: str = "f32", threads: int | None = None) -> None:
        super().__init__()
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeNotInstalled("OpenVINO is not installed: pip install 'capdist[openvino]'") from None
        core = ov.Core()
        model = core.read_model(str(path))
        batch = model.inputs[0].get_partial_shape()[0]
        self.fixed_batch = None if batch.is_dynamic else batch.get_length()
        config = {"INFERENCE_PRECISION_HINT": precision, **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
        self.compiled = core.compile_model(model, "CPU", config)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.compiled({0: x})[0]


def runtime_module(path: str | Path, runtime: str) -> nn.Module:
    """The module that runs ``path`` in ``runtime`` (``onnxruntime`` or ``openvino``)."""
    return OnnxModule(path) if runtime == "onnxruntime" else OpenVinoModule(path)
