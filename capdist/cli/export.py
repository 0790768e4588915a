"""``capdist export SOURCE --format onnx|openvino|torchscript [--precision fp32|fp16|int8] [--data D]``."""

from __future__ import annotations

from pathlib import Path

import click

from ..io.export import EXPORTERS, FORMATS
from ..io.quantize import CALIBRATIONS, PRECISIONS
from ..models import parse_input_size
from .options import model_source_options, open_cli_model


@click.command("export")
@click.argument("source")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="onnx (ONNX Runtime, TensorRT, ...), openvino (IR: .xml + .bin) or torchscript.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp16 weights and compute, or int8 static quantisation calibrated on --data's training images.")
@click.option("--exporter", type=click.Choice(EXPORTERS), default="torchscript", show_default=True,
              help="torch's ONNX exporter (dynamo needs the onnxscript package).")
@click.option("--out", default=None, help="File to write (default: beside the run's model, e.g. model.int8.onnx).")
@click.option("--data", default=None,
              help="Evaluate retrieval with the exported file on this dataset (mAP, and against the teacher's "
                   "gallery); INT8 calibrates on its training images.")
@click.option("--teacher", default=None,
              help="The model whose gallery is already indexed (default: the teacher the run records).")
@click.option("--calibration-images", default=256, show_default=True, type=click.IntRange(min=1),
              help="Training images that calibrate INT8.")
@click.option("--calibration-method", type=click.Choice(CALIBRATIONS), default="minmax", show_default=True,
              help="How INT8's activation ranges are read from the calibration images.")
@click.option("--test-subset", type=click.IntRange(min=1), default=None, help="Evaluate on this many queries.")
@model_source_options
@click.option("--input-size", default="224x224", show_default=True,
              help="For a model spec: HxW (three channels) or CxHxW of one image.")
@click.option("--num-classes", default=1000, show_default=True, help="For a model spec: its classifier's classes.")
def export_cmd(source: str, fmt: str, precision: str, exporter: str, out: str | None, data: str | None,
               teacher: str | None, calibration_images: int, calibration_method: str, test_subset: int | None,
               weights, model_args, embedding_output, allow_partial, input_size: str, num_classes: int) -> None:
    """Export the embedding path of a run directory (or a model spec with --weights) for deployment,
    check the file against PyTorch, and with --data measure its retrieval as it ships."""
    from ..methods.deploy import DeployConfig, Exportable, deploy, describe

    config = DeployConfig(fmt, precision, exporter, calibration_images, calibration_method)
    if Path(source).is_dir() and (Path(source) / "config.json").is_file():
        item = Exportable.from_run(source)
    else:
        size = parse_input_size(input_size)
        model = open_cli_model(source, weights, model_args, embedding_output, allow_partial, num_classes)
        item = Exportable.from_model(model, size)
    summary = deploy(item, config, out, data, teacher, test_subset)
    for line in describe(summary):
        click.echo(line)
    if summary.get("fixed_batch"):
        click.echo(f"note: exported with a fixed batch of {summary['fixed_batch']}: the model's forward reads its "
                   "input's shape, which the ONNX exporter cannot keep dynamic", err=True)
