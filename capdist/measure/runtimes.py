"""Timing back-ends for the runtimes models are deployed in: ONNX Runtime and OpenVINO on the CPU,
ONNX Runtime's CUDA and TensorRT providers on a CUDA GPU.

Each prepares a module once (exported to ONNX in memory, then an inference session or a compiled
OpenVINO model with the requested threads, built by :mod:`capdist.io.runtime_modules`) and times
its inference call with ``torch.utils.benchmark``, so a figure here and an eager one come from the
same statistics. Both runtimes are optional packages: a missing one is one error naming its
install command, raised when the timer is built.

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
from ..io.runtime_modules import (
    GPU_PROVIDERS,
    onnx_gpu_session,
    onnx_session,
    onnxruntime_module,
    openvino_compiled,
    openvino_module,
    require_gpu_provider,
)
from .call_timing import CallTiming


def onnx_bytes(module: nn.Module, x: torch.Tensor) -> bytes:
    """``module`` exported to ONNX for inputs shaped like ``x`` (fixed shape: timing needs no other)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), buffer, dynamo=False, input_names=["images"],
                          output_names=["output"])
    return buffer.getvalue()


def _on_cpu(name: str, x: torch.Tensor) -> None:
    if x.device.type != "cpu":
        raise CapdistError(f"the {name} back-end times on the CPU; run with --device cpu")


class OnnxRuntimeTimer:
    """ONNX Runtime on the CPU execution provider, all graph optimisations, ``threads`` intra-op threads
    that do not spin-wait between runs (with spinning, the side-by-side ratios of several sessions timed
    in turn spread twice as wide here).

    Args:
        threads: intra-op threads of the session (default: torch's setting when built).
    """

    name = "onnxruntime"

    def __init__(self, threads: int | None = None) -> None:
        self._version = onnxruntime_module().__version__
        self.threads = threads or torch.get_num_threads()

    def describe(self, x: torch.Tensor) -> dict[str, Any]:
        return {"runtime": f"onnxruntime {self._version} (CPU)", "threads": self.threads,
                "batch": int(x.shape[0]), "precision": "float32"}

    def prepare(self, module: nn.Module, x: torch.Tensor) -> CallTiming:
        _on_cpu(self.name, x)
        # threads that sleep between runs: a spin-waiting session steals the cores of the next one timed
        session = onnx_session(onnx_bytes(module, x), self.threads, spinning=False)
        feed = {session.get_inputs()[0].name: x.numpy()}
        return CallTiming(lambda: session.run(None, feed))


class OnnxRuntimeGpuTimer:
    """ONNX Runtime on a CUDA GPU through its CUDA or TensorRT execution provider (TensorRT builds its
    engine at the first run, which the timing's warm-up absorbs). The input is bound on the GPU and the
    output left there (I/O binding), so what is timed is the inference, not the copies to and from the
    host, as for a forward of a model on CUDA in eager. TensorRT builds an engine for every model it is
    given, so a per-layer latency table measured in it takes minutes per network.

    Args:
        provider: ``cuda`` or ``tensorrt``.
        threads: recorded as the host's threads in :meth:`describe` (the GPU runs the model).
    """

    def __init__(self, provider: str = "cuda", threads: int | None = None) -> None:
        if provider not in GPU_PROVIDERS:
            raise CapdistError(f"unknown ONNX Runtime GPU provider {provider!r}; choose cuda or tensorrt")
        require_gpu_provider(provider)
        self.provider = provider
        self.name = f"onnxruntime-{provider}"
        self._version = onnxruntime_module().__version__
        self.threads = threads or torch.get_num_threads()

    def describe(self, x: torch.Tensor) -> dict[str, Any]:
        label = {"cuda": "CUDA", "tensorrt": "TensorRT"}[self.provider]
        # TensorRT runs float32 convolutions in TF32 on GPUs that have it unless NVIDIA_TF32_OVERRIDE=0
        precision = "float32" if self.provider == "cuda" else "float32 (TF32 where the GPU has it)"
        return {"runtime": f"onnxruntime {self._version} ({label})", "threads": self.threads,
                "batch": int(x.shape[0]), "precision": precision}

    def check(self, device: torch.device) -> None:
        """Start a session on ``device`` for a one-layer model, so a provider that cannot run there (CUDA
        or TensorRT libraries missing: ONNX Runtime would fall back to the CPU) fails before any work."""
        self.prepare(nn.Conv2d(3, 4, 1).eval().to(device), torch.zeros(1, 3, 8, 8, device=device))

    def prepare(self, module: nn.Module, x: torch.Tensor) -> CallTiming:
        if x.device.type != "cuda":
            raise CapdistError(f"the {self.name} back-end times on a CUDA GPU; run with --device cuda")
        device_id = x.device.index if x.device.index is not None else torch.cuda.current_device()
        session = onnx_gpu_session(onnx_bytes(module, x), self.provider, device_id)
        ort = onnxruntime_module()
        binding = session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(x.detach().cpu().numpy(), "cuda", device_id)
        binding.bind_ortvalue_input(session.get_inputs()[0].name, value)
        binding.bind_output(session.get_outputs()[0].name, "cuda", device_id)

        def run() -> None:
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        return CallTiming(run)


class OpenVinoTimer:
    """OpenVINO on the CPU plug-in, latency mode, ``threads`` inference threads, float32 inference
    precision (the plug-in's default may run bf16 or f16 on CPUs that have them).

    Args:
        threads: inference threads (default: torch's setting when built).
        precision: OpenVINO's ``INFERENCE_PRECISION_HINT`` (``f32``; ``bf16`` / ``f16`` where supported).
    """

    name = "openvino"

    def __init__(self, threads: int | None = None, precision: str = "f32") -> None:
        self._version = openvino_module().__version__.split("-")[0]
        self.threads = threads or torch.get_num_threads()
        self.precision = precision

    def describe(self, x: torch.Tensor) -> dict[str, Any]:
        precision = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}.get(self.precision, self.precision)
        return {"runtime": f"openvino {self._version} (CPU)", "threads": self.threads,
                "batch": int(x.shape[0]), "precision": precision}

    def compile(self, model: bytes | str):
        """``model`` (ONNX bytes, or an ONNX / IR file) compiled for the CPU with this timer's settings."""
        return openvino_compiled(model, self.precision, self.threads)

    def prepare(self, module: nn.Module, x: torch.Tensor) -> CallTiming:
        _on_cpu(self.name, x)
        request = self.compile(onnx_bytes(module, x)).create_infer_request()
        array = np.ascontiguousarray(x.numpy())
        return CallTiming(lambda: request.infer({0: array}))
