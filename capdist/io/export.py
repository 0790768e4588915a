"""Export the embedding path of a model for deployment and check the file against PyTorch.

Formats: ONNX (torch's TorchScript-based exporter, or its dynamo exporter), OpenVINO IR (converted
from the ONNX file) and TorchScript; precisions float32, float16 and INT8 (static post-training
quantisation calibrated on the user's images, :mod:`capdist.io.quantize`). Every file is written
atomically, carries the input contract (size, mean / std) in its metadata (an ONNX metadata entry,
an OpenVINO runtime-info entry, a TorchScript extra file, each named ``capdist.input``), and comes
back with the largest difference between its output and PyTorch's on sample inputs, run by the
file's own runtime.

Example:
    >>> result = export_run("runs/cdd35", "onnx")  # doctest: +SKIP
    >>> result.max_abs_diff < 1e-4  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import CapdistError, first_line
from .out_dir import RUN_MARKERS
from .quantize import PRECISIONS, to_fp16, to_int8
from .run_dir import load_retrieval, read_config
from .runtime_modules import OnnxModule, OpenVinoModule, openvino_module

FORMATS = ("onnx", "openvino", "torchscript")
EXPORTERS = ("torchscript", "dynamo")
_SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".torchscript.pt"}


class ExportError(CapdistError):
    """An export that fails or a format that is not supported."""


class EmbeddingOnly(nn.Module):
    """The retrieval path of a model: images -> embedding."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out["embedding"] if isinstance(out, dict) else out


@dataclass
class ExportResult:
    """Where the file went, how far it is from PyTorch, and a module that runs it.

    Attributes:
        max_abs_diff: largest |file - PyTorch| over the sample inputs' embeddings.
        output_scale: largest |PyTorch| over the same embeddings (parity is read relative to it).
    """

    path: Path
    max_abs_diff: float
    module: nn.Module
    fixed_batch: int | None = None
    output_scale: float = 1.0
    fmt: str = "onnx"
    precision: str = "fp32"

    @property
    def relative_diff(self) -> float:
        return self.max_abs_diff / max(self.output_scale, 1e-12)


def default_name(fmt: str, precision: str = "fp32") -> str:
    """``model.onnx``, ``model.int8.onnx``, ``model.fp16.xml``, ``model.torchscript.pt``, ..."""
    return "model" + ("" if precision == "fp32" else f".{precision}") + _SUFFIX[fmt]


def run_sample(run: Path, config: dict) -> torch.Tensor:
    """The inputs a run saved with its outputs (random ones of its image shape where it saved none)."""
    sample = run / "sample.safetensors"
    if sample.is_file():
        return load_file(str(sample))["images"]
    return random_sample(config.get("image_shape", [3, 224, 224]))


def random_sample(shape: Iterable[int]) -> torch.Tensor:
    """Four random images of ``shape`` (C, H, W), the same every time."""
    return torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))


def input_contract(config: dict) -> dict:
    """The input a file takes: image shape, pixels in [0, 1] and the per-channel mean / std applied to
    them (a 0-255 model's contract is mean 0, std 1/255)."""
    return {"shape": config.get("image_shape"), "pixels": "[0, 1], then (pixel - mean) / std per channel",
            "mean": config.get("mean"), "std": config.get("std")}


def _onnx(model: nn.Module, x: torch.Tensor, path: str, exporter: str) -> int | None:
    """Write ``model`` as ONNX with a dynamic batch where the model allows it; the fixed batch otherwise."""
    names = {"input_names": ["images"], "output_names": ["embedding"]}
    if exporter == "dynamo":
        try:
            torch.onnx.export(model, (x,), path, dynamo=True, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("batch")},), **names)
            return None
        except Exception:  # a forward that reads its input's shape
            torch.onnx.export(model, (x[:1],), path, dynamo=True, verbose=False, **names)
            return 1
    try:
        torch.onnx.export(model, (x,), path, dynamo=False,
                          dynamic_axes={"images": {0: "batch"}, "embedding": {0: "batch"}}, **names)
        return None
    except Exception:  # a forward that reads its input's shape (e.g. GeM's pooling window)
        torch.onnx.export(model, (x[:1],), path, dynamo=False, **names)
        return 1


def _add_onnx_metadata(path: str, contract: dict) -> None:
    import onnx

    model = onnx.load(path)
    entry = model.metadata_props.add()
    entry.key, entry.value = "capdist.input", json.dumps(contract)
    onnx.save(model, path)


def _onnx_at(precision: str, fp32: str, work: str, calibration: list[torch.Tensor] | None, method: str) -> str:
    """The ONNX file of ``precision`` made from the float32 one."""
    if precision == "fp32":
        return fp32
    target = os.path.join(work, f"model.{precision}.onnx")
    if precision == "fp16":
        to_fp16(fp32, target)
    else:
        root = logging.getLogger()
        level, root.level = root.level, logging.ERROR  # the quantiser warns about every 1-D weight
        try:
            to_int8(fp32, target, calibration or [], method=method)
        finally:
            root.setLevel(level)
    return target


def _openvino_ir(onnx_path: str, target: str, precision: str, contract: dict) -> None:
    ov = openvino_module()
    model = ov.convert_model(onnx_path)
    model.set_rt_info(json.dumps(contract), ["capdist", "input"])
    ov.save_model(model, target, compress_to_fp16=precision == "fp16")


def _check_target(path: Path, run: Path | None, fmt: str, precision: str) -> None:
    if fmt == "torchscript" and precision != "fp32":
        raise ExportError(f"torchscript export is float32 only; use --format onnx or openvino for {precision}")
    if path.is_dir():
        raise ExportError(f"--out {path} is a directory; name the file to write, e.g. "
                          f"{path / default_name(fmt, precision)}")
    if run is not None and path.resolve().parent == run.resolve():
        written = {path.name, path.name + ".json"} | ({path.with_suffix(".bin").name} if fmt == "openvino" else set())
        for name in sorted(written & set(RUN_MARKERS + ("plan.json", "sample.safetensors"))):
            raise ExportError(f"--out {path} would overwrite the run's own {name}; choose another file name")
    if not path.parent.is_dir():
        raise ExportError(f"the folder of --out {path} does not exist; create it first")
    if fmt == "openvino" and path.suffix != ".xml":
        raise ExportError(f"--out {path}: an OpenVINO IR file ends in .xml (its weights go beside it in .bin)")


def export_model(model: nn.Module, x: torch.Tensor, fmt: str, path: str | Path, contract: dict,
                 precision: str = "fp32", exporter: str = "torchscript",
                 calibration: list[torch.Tensor] | None = None, run: Path | None = None,
                 calibration_method: str = "minmax") -> ExportResult:
    """Write the embedding path of ``model`` to ``path`` and check it on ``x``.

    Args:
        model: the network (its embedding is exported; eval mode).
        x: sample inputs: the export's example and the parity check's data.
        fmt: ``onnx``, ``openvino`` or ``torchscript``.
        path: the file to write (an OpenVINO ``.xml`` gets its ``.bin`` beside it).
        contract: the input contract written into the file's metadata (:func:`input_contract`).
        precision: ``fp32``, ``fp16`` or ``int8`` (ONNX and OpenVINO).
        exporter: torch's ONNX exporter: ``torchscript`` or ``dynamo``.
        calibration: image batches that set INT8's activation ranges (needed for ``int8``).
        run: the run directory the model came from (its own files are never overwritten).
        calibration_method: how INT8's activation ranges are read from ``calibration``
            (:data:`~capdist.io.quantize.CALIBRATIONS`).

    Raises:
        ExportError: an unknown format, precision or exporter, a bad ``path``, or a failed export.
    """
    if fmt not in FORMATS or precision not in PRECISIONS or exporter not in EXPORTERS:
        raise ExportError(f"unknown export {fmt}/{precision}/{exporter}: formats {', '.join(FORMATS)}; precisions "
                          f"{', '.join(PRECISIONS)}; exporters {', '.join(EXPORTERS)}")
    path = Path(path)
    _check_target(path, run, fmt, precision)
    if precision == "int8" and not calibration:
        raise ExportError("int8 export calibrates on training images; give --data")
    if exporter == "dynamo" and fmt != "torchscript" and importlib.util.find_spec("onnxscript") is None:
        raise ExportError("the dynamo exporter needs onnxscript: pip install 'capdist[export]'")
    model = EmbeddingOnly(model).eval()
    work = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.")
    fixed_batch = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            written = os.path.join(work, path.name)
            if fmt == "torchscript":
                torch.jit.trace(model, x).save(written, _extra_files={"capdist.input": json.dumps(contract)})
            else:
                fp32 = os.path.join(work, "model.fp32.onnx")
                fixed_batch = _onnx(model, x, fp32, exporter)
                _add_onnx_metadata(fp32, contract)
                if fixed_batch and calibration:  # the file takes batches of that size only
                    calibration = [part for batch in calibration for part in batch.split(fixed_batch)]
                chosen = _onnx_at(precision, fp32, work, calibration, calibration_method)
                if fmt == "onnx":
                    os.replace(chosen, written)
                else:
                    _openvino_ir(chosen, written, precision, contract)
            exported = _runner(written, fmt)
            with torch.no_grad():
                reference = model(x).float()
                diff = float((exported(x).float() - reference).abs().max())
        _publish(written, path, fmt)
    except CapdistError:
        raise
    except Exception as exc:  # exporters raise many types
        raise ExportError(f"{fmt} export failed: {type(exc).__name__}: {first_line(exc)}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(path=path, max_abs_diff=diff, module=exported, fixed_batch=fixed_batch,
                        output_scale=float(reference.abs().max()), fmt=fmt, precision=precision)


def _runner(path: str, fmt: str) -> nn.Module:
    if fmt == "torchscript":
        return torch.jit.load(path)
    return OnnxModule(path) if fmt == "onnx" else OpenVinoModule(path)


def _publish(written: str, path: Path, fmt: str) -> None:
    """Move the finished file (and an IR's weights) into place, each by an atomic rename."""
    if fmt == "openvino":
        os.replace(Path(written).with_suffix(".bin"), path.with_suffix(".bin"))
    os.replace(written, path)


def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None, precision: str = "fp32",
               exporter: str = "torchscript", calibration: list[torch.Tensor] | None = None) -> ExportResult:
    """Export the embedding path of the run directory ``run_dir`` (default file: beside its model).

    Raises:
        ExportError: see :func:`export_model`.
    """
    run = Path(run_dir)
    config = read_config(run)
    if fmt not in _SUFFIX:
        raise ExportError(f"unknown export format '{fmt}' ({', '.join(FORMATS)})")
    path = Path(out) if out else run / default_name(fmt, precision)
    return export_model(load_retrieval(run), run_sample(run, config), fmt, path, input_contract(config), precision,
                        exporter, calibration, run=run)
