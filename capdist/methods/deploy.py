"""Export a model for deployment and measure the file that ships: parity with PyTorch, and with
data its own retrieval mAP and its asymmetric mAP against the float32 teacher's gallery (queries
encoded by the exported file, the already indexed gallery by the teacher), beside the same figures
of the PyTorch model it came from. The figures are written next to the file as ``<file>.json``.

Example:
    >>> summary = deploy("runs/cdd25", DeployConfig("onnx", "int8"), data="fmnist")  # doctest: +SKIP
    >>> summary["exported"]["asymmetric"]["mAP"]  # doctest: +SKIP
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..data import RetrievalData
from ..data.loader import fetch
from ..engine.evaluation import evaluate_models
from ..errors import CapdistError, UnsupportedModel
from ..io.atomic import atomic_write_json
from ..io.export import EmbeddingOnly, default_name, export_model, input_contract, random_sample, run_sample
from ..io.recipe import RecipeError, read_recipe
from ..io.run_dir import load_retrieval, read_config
from ..models.factory import parse_model_args
from .common import ModelSource, resolve_data


@dataclass(slots=True)
class DeployConfig:
    """What to write.

    Attributes:
        fmt: ``onnx``, ``openvino`` or ``torchscript``.
        precision: ``fp32``, ``fp16`` or ``int8``.
        exporter: torch's ONNX exporter, ``torchscript`` or ``dynamo``.
        calibration_images: training images that calibrate INT8 (drawn by ``seed``).
        calibration_method: how INT8's activation ranges are set: minmax or percentile.
        seed: which calibration images.
    """

    fmt: str = "onnx"
    precision: str = "fp32"
    exporter: str = "torchscript"
    calibration_images: int = 256
    calibration_method: str = "minmax"
    seed: int = 0


def calibration_batches(data: RetrievalData, count: int, seed: int = 0, batch: int = 32) -> list[torch.Tensor]:
    """``count`` training images drawn by ``seed`` (as the model sees them at inference), in batches."""
    picked = random.Random(seed).sample(range(len(data.train)), min(count, len(data.train)))
    return list(fetch(data.train, torch.tensor(picked))[0].split(batch))


def recorded_teacher(run: Path) -> ModelSource | None:
    """The teacher a run was made from, as its ``config.yaml`` records it: ``teacher`` of a compress
    run, ``model`` of a prune run (None for other runs: a trained model's ``model`` is where it started)."""
    recipe = run / "config.yaml"
    if not recipe.is_file():
        return None
    for command, key in (("compress", "teacher"), ("prune", "model")):
        try:
            settings = read_recipe(recipe, command)
        except RecipeError:
            continue
        if settings.get(key):
            return ModelSource(settings[key], settings.get("weights"),
                               parse_model_args(settings.get("model-arg") or []), settings.get("embedding-output"),
                               bool(settings.get("allow-partial")))
    return None


@dataclass
class Exportable:
    """A model to export, with what its file records.

    Attributes:
        model: the network (PyTorch, float32).
        sample: inputs for the export and its parity check.
        config: ``image_shape``, ``mean``, ``std`` (the input contract) as a run records them.
        run: the run directory it came from (None for a model spec).
        teacher: the model whose gallery is indexed, as the run records it.
    """

    model: nn.Module
    sample: torch.Tensor
    config: dict
    run: Path | None = None
    teacher: ModelSource | None = None

    @classmethod
    def from_run(cls, run_dir: str | Path) -> Exportable:
        run = Path(run_dir)
        config = read_config(run)
        return cls(load_retrieval(run).eval(), run_sample(run, config), config, run, recorded_teacher(run))

    @classmethod
    def from_model(cls, model: nn.Module, image_shape: tuple[int, int, int], mean: list[float] | None = None,
                   std: list[float] | None = None) -> Exportable:
        config = {"image_shape": list(image_shape), "mean": mean, "std": std}
        return cls(model.eval(), random_sample(image_shape), config)

    @property
    def num_classes(self) -> int | None:
        model = self.config.get("model")
        return model.get("num_classes") if isinstance(model, dict) else None


def _figures(model: nn.Module, data: RetrievalData, teacher: nn.Module | None) -> dict:
    row = {"symmetric": evaluate_models(model, data)}
    if teacher is not None:
        row["asymmetric"] = evaluate_models(model, data, gallery_model=teacher)
    return row


def deploy(source: Exportable | str | Path, config: DeployConfig, out: str | Path | None = None,
           data: str | RetrievalData | None = None, teacher: str | ModelSource | None = None,
           test_subset: int | None = None) -> dict:
    """Export ``source`` as ``config`` says and measure the file; returns the summary written beside it.

    Args:
        source: a run directory written by capdist, or a model in hand (:meth:`Exportable.from_model`).
        config: format, precision, exporter and calibration.
        out: the file (default: beside the run's model; required for a model in hand).
        data: evaluate retrieval with the file on this dataset (INT8 calibrates on its training images).
        teacher: the model whose gallery is already indexed (default: the teacher the run records).
        test_subset: evaluate on this many queries.

    Raises:
        CapdistError: INT8 without data, or a failed export (nothing is left behind).
    """
    item = source if isinstance(source, Exportable) else Exportable.from_run(source)
    if config.precision == "int8" and data is None:
        raise CapdistError("int8 export calibrates on training images; give --data")
    if out is None and item.run is None:
        raise CapdistError("give --out: the file to write")
    opened = resolve_data(data, None, test_subset, config.seed) if data is not None else None
    gallery, gallery_name = _gallery_model(item, opened, teacher) if opened is not None else (None, None)
    calibration = calibration_batches(opened, config.calibration_images, config.seed) \
        if opened is not None and config.precision == "int8" else None
    path = Path(out) if out else item.run / default_name(config.fmt, config.precision)
    contract = input_contract(item.config)
    result = export_model(item.model, item.sample, config.fmt, path, contract, config.precision,
                          config.exporter, calibration, run=item.run, calibration_method=config.calibration_method)
    summary = {"file": str(result.path), **asdict(config), "max_abs_diff": result.max_abs_diff,
               "relative_diff": result.relative_diff, "fixed_batch": result.fixed_batch, "input": contract}
    try:
        if opened is not None:
            summary.update({"data": opened.name, "teacher": gallery_name,
                            "exported": _figures(result.module, opened, gallery),
                            "pytorch": _figures(item.model, opened, gallery)})
        atomic_write_json(Path(str(result.path) + ".json"), summary)
    except BaseException:
        for written in (result.path, result.path.with_suffix(".bin")) if config.fmt == "openvino" else (result.path,):
            written.unlink(missing_ok=True)
        raise
    return summary


def _gallery_model(item: Exportable, data: RetrievalData, teacher: str | ModelSource | None
                   ) -> tuple[nn.Module | None, str | None]:
    """The model whose gallery is indexed (given, or the one the run records), opened and checked to
    embed in the same space as the model to export, before anything is written."""
    if isinstance(shape := item.config.get("image_shape"), list) and list(data.image_shape) != shape:
        raise CapdistError(f"--data {data.name} gives {'x'.join(map(str, data.image_shape))} images; the model "
                           f"takes {'x'.join(map(str, shape))}: give the data it was made for")
    source = ModelSource.of(teacher) if teacher is not None else item.teacher
    if source is None:
        return None, None
    gallery = source.open(item.num_classes or data.num_classes)
    with torch.no_grad():
        ours, theirs = EmbeddingOnly(item.model)(item.sample[:1]), EmbeddingOnly(gallery)(item.sample[:1])
    if ours.shape[-1] != theirs.shape[-1]:
        raise UnsupportedModel(f"the model embeds in {ours.shape[-1]} dimensions and the teacher {source.spec} in "
                               f"{theirs.shape[-1]}; the mAP against its gallery needs one embedding space")
    return gallery, str(source.spec)


def describe(summary: dict) -> list[str]:
    """The summary as lines for a person."""
    lines = [f"wrote {summary['file']} ({summary['fmt']}, {summary['precision']}); max |file - pytorch| = "
             f"{summary['max_abs_diff']:.2e} ({summary['relative_diff']:.1e} of the output scale) on sample inputs"]
    if "exported" in summary:
        for key, name in (("exported", "the exported file"), ("pytorch", "PyTorch (float32)")):
            row = summary[key]
            text = f"{name}: mAP {row['symmetric']['mAP']:.2%}  R@1 {row['symmetric']['R@1']:.2%}"
            if "asymmetric" in row:
                text += f"; against the teacher's gallery mAP {row['asymmetric']['mAP']:.2%}"
            lines.append(text)
        if summary.get("teacher") is None:
            lines.append("no teacher recorded: give --teacher for the mAP against its gallery")
    return lines


__all__ = ["DeployConfig", "Exportable", "calibration_batches", "deploy", "describe", "recorded_teacher"]
