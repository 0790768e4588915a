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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CapdistError

PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATIONS = ("minmax", "percentile", "entropy")
HEADS = ("fp32", "int8")
log = logging.getLogger(__name__)


class QuantizationError(CapdistError):
    """A reduced-precision conversion that cannot run."""


@dataclass(frozen=True)
class Int8Settings:
    """How INT8 is calibrated and what it leaves in float32.

    Attributes:
        method: how activation ranges are read from the calibration images (:data:`CALIBRATIONS`).
        head: ``fp32`` keeps the nodes after the last convolution (pooling, the embedding head) in
            float32; ``int8`` quantises them too.
    """

    method: str = "minmax"
    head: str = "fp32"


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


def head_nodes(path: str | Path) -> list[str]:
    """Names of the nodes of an ONNX file that come after its last convolution: every node that is not a
    convolution and feeds none, directly or through others (pooling, flattening, the embedding head).
    They cost next to nothing, and quantising them would round the embedding itself to 256 levels."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    feeds_conv: dict[int, bool] = {}
    for node in reversed(graph.node):  # ONNX stores nodes in topological order
        feeds_conv[id(node)] = any(c.op_type == "Conv" or feeds_conv.get(id(c), False)
                                   for out in node.output for c in consumers.get(out, []))
    return [node.name for node in graph.node if node.op_type != "Conv" and not feeds_conv[id(node)]]


def to_int8(source: str | Path, target: str | Path, batches: Iterable[torch.Tensor],
            per_channel: bool = True, method: str = "minmax", head: str = "fp32") -> None:
    """INT8 static quantisation of ``source`` (QDQ: activations uint8, weights int8, per output channel),
    the activation ranges taken from ``batches`` by ``method``: ``minmax`` (the observed range),
    ``percentile`` (99.999% of it) or ``entropy`` (KL divergence). With ``head="fp32"`` the nodes after
    the last convolution (:func:`head_nodes`) stay float32, so the embedding is not rounded to INT8.

    Raises:
        QuantizationError: onnxruntime is missing, no calibration batch was given, or an unknown method.
    """
    if method not in CALIBRATIONS:
        raise QuantizationError(f"unknown calibration method {method!r}; choose one of: {', '.join(CALIBRATIONS)}")
    if head not in HEADS:
        raise QuantizationError(f"unknown INT8 head precision {head!r}; choose one of: {', '.join(HEADS)}")
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
        excluded = head_nodes(prepared) if head == "fp32" else []
        with contextlib.redirect_stdout(io.StringIO()) as said:  # its calibrators print their progress
            quantize_static(prepared, str(target), _Batches("images", batches), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method={"minmax": CalibrationMethod.MinMax,
                                              "percentile": CalibrationMethod.Percentile,
                                              "entropy": CalibrationMethod.Entropy}[method],
                            nodes_to_exclude=excluded)
        for line in said.getvalue().splitlines():
            log.debug("onnxruntime calibration: %s", line)
    finally:
        os.unlink(prepared)
