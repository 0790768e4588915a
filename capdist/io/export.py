"""Export a run directory to ONNX or TorchScript and check the exported model against PyTorch
(the check covers the embedding).

Example:
    >>> result = export_run("runs/cdd35", "onnx")  # doctest: +SKIP
    >>> result.max_abs_diff < 1e-4  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import CapdistError
from .out_dir import RUN_MARKERS
from .run_dir import load_retrieval, read_config


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


class OnnxModule(nn.Module):
    """Runs an ONNX file with onnxruntime behind an ``nn.Module`` interface (for evaluation)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError("onnxruntime is not installed: pip install 'capdist[export]' "
                              "(or onnxruntime-gpu)") from None

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        batch = self.session.get_inputs()[0].shape[0]
        self.fixed_batch = batch if isinstance(batch, int) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().cpu()
        if self.fixed_batch is None:
            return torch.from_numpy(self.session.run(None, {"images": x.numpy()})[0])
        n = self.fixed_batch
        outs = [torch.from_numpy(self.session.run(None, {"images": x[i:i + n].numpy()})[0])
                for i in range(0, len(x), n)]
        return torch.cat(outs)


@dataclass
class ExportResult:
    """Where the file went and how far it is from PyTorch."""

    path: Path
    max_abs_diff: float
    module: nn.Module
    fixed_batch: int | None = None


def _sample(run: Path, config: dict) -> torch.Tensor:
    sample = run / "sample.safetensors"
    if sample.is_file():
        return load_file(str(sample))["images"]
    shape = config.get("image_shape", [3, 224, 224])
    return torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))


def _write_input_contract(path: str, config: dict) -> None:
    """The input the file takes, as ONNX metadata (``capdist.input``: shape, and pixels in [0, 1]
    normalised with ``mean`` / ``std`` per channel), so a deployment reads it from the file."""
    import onnx

    model = onnx.load(path)
    contract = {"shape": config.get("image_shape"), "pixels": "[0, 1], then (pixel - mean) / std per channel",
                "mean": config.get("mean"), "std": config.get("std")}
    entry = model.metadata_props.add()
    entry.key, entry.value = "capdist.input", json.dumps(contract)
    onnx.save(model, path)


def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None) -> ExportResult:
    """Export the embedding path of ``run_dir`` as ``onnx`` or ``torchscript`` (written atomically).

    Raises:
        ExportError: unknown format or a failed export.
    """
    run = Path(run_dir)
    config = read_config(run)
    model = EmbeddingOnly(load_retrieval(run)).eval()
    x = _sample(run, config)
    suffix = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}.get(fmt)
    if suffix is None:
        raise ExportError(f"unknown export format '{fmt}' (onnx or torchscript)")
    path = Path(out) if out else run / f"model{suffix}"
    if path.is_dir():
        raise ExportError(f"--out {path} is a directory; name the file to write, e.g. {path / ('model' + suffix)}")
    if path.resolve().parent == run.resolve() and path.name in RUN_MARKERS + ("plan.json", "sample.safetensors"):
        raise ExportError(f"--out {path} would overwrite the run's own {path.name}; choose another file name")
    if not path.parent.is_dir():
        raise ExportError(f"the folder of --out {path} does not exist; create it first")
    fixed_batch = None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "onnx":
                try:
                    torch.onnx.export(model, (x,), tmp, dynamo=False, input_names=["images"],
                                      output_names=["embedding"],
                                      dynamic_axes={"images": {0: "batch"}, "embedding": {0: "batch"}})
                except Exception:  # a forward that reads its input's shape (e.g. GeM's pooling window)
                    fixed_batch = 1
                    torch.onnx.export(model, (x[:1],), tmp, dynamo=False, input_names=["images"],
                                      output_names=["embedding"])
                _write_input_contract(tmp, config)
                exported: nn.Module = OnnxModule(tmp)
            else:
                traced = torch.jit.trace(model, x)
                traced.save(tmp)
                exported = torch.jit.load(tmp)
        with torch.no_grad():
            diff = float((exported(x).float() - model(x).float()).abs().max())
        os.replace(tmp, path)
    except CapdistError:
        raise
    except Exception as exc:  # exporters raise many types
        raise ExportError(f"{fmt} export of {run} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}") \
            from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if fmt == "onnx":
        exported = OnnxModule(path)
    return ExportResult(path=path, max_abs_diff=diff, module=exported, fixed_batch=fixed_batch)
