"""Reduced-precision copies of an exported ONNX file: float16 weights and compute, and INT8 static
post-training quantisation calibrated on the user's own images (ONNX Runtime's quantiser, QDQ format,
weights per channel), which ONNX Runtime and OpenVINO both run as INT8.

Example:
    >>> to_int8("model.onnx", "model.int8.onnx", calibration_batches)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..errors import CapdistError

PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATIONS = ("minmax", "percentile")
log = logging.getLogger(__name__)


class QuantizationError(CapdistError):
    """A reduced-precision conversion that cannot run."""


def to_fp16(source: str | Path, target: str | Path) -> None:
    """``source`` with float16 weights and compute; its input and output stay float32."""
    import onnx

    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        raise QuantizationError("fp16 export needs onnxruntime: pip install 'capdist[export]'") from None
    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))


class _Batches:
    """ONNX Runtime's calibration reader over batches of images."""

    def __init__(self, name: str, batches: Iterable[torch.Tensor]) -> None:
        self._feeds = iter([{name: np.ascontiguousarray(b.detach().cpu().float().numpy())} for b in batches])

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def to_int8(source: str | Path, target: str | Path, batches: Iterable[torch.Tensor],
            per_channel: bool = True, method: str = "minmax") -> None:
    """INT8 static quantisation of ``source`` (QDQ: activations uint8, weights int8, per output channel),
    the activation ranges taken from ``batches`` by ``method``: ``minmax`` (the observed range),
    or ``percentile`` (99.999% of it). ONNX Runtime's entropy calibrator is not offered: ``quantize_static``
    gives it as many histogram bins as quantised bins, so its threshold search has one candidate, the
    full range, and it returns min-max's ranges whenever the first batch spans the data.

    Raises:
        QuantizationError: onnxruntime is missing, no calibration batch was given, or an unknown method.
    """
    if method not in CALIBRATIONS:
        raise QuantizationError(f"unknown calibration method {method!r}; choose one of: {', '.join(CALIBRATIONS)}")
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise QuantizationError("int8 export needs onnxruntime: pip install 'capdist[export]'") from None
    batches = list(batches)
    if not batches:
        raise QuantizationError("int8 export needs calibration images; give --data")
    fd, prepared = tempfile.mkstemp(suffix=".onnx", dir=Path(target).parent)
    os.close(fd)
    try:
        quant_pre_process(str(source), prepared, skip_symbolic_shape=True)
        with contextlib.redirect_stdout(io.StringIO()) as said:  # its calibrators print their progress
            quantize_static(prepared, str(target), _Batches("images", batches), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method={"minmax": CalibrationMethod.MinMax,
                                              "percentile": CalibrationMethod.Percentile}[method])
        for line in said.getvalue().splitlines():
            log.debug("onnxruntime calibration: %s", line)
    finally:
        os.unlink(prepared)
