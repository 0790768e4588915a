"""``capdist compress``: Capacity Dynamic Distillation of a trained retrieval model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ..methods import CompressConfig, ModelSource, RunOptions, compress
from .config_file import config_option
from .from_config import SectionedCommand, config_from, config_options
from .options import (
    DATA_HELP,
    MODEL_HELP,
    check_batch,
    check_single_target,
    data_options,
    model_source_options,
    open_cli_data,
    run_options,
    train_settings,
)


@click.command("compress", cls=SectionedCommand)
@config_option
@click.option("--teacher", "--model", "teacher", required=True, help=MODEL_HELP)
@model_source_options
@click.option("--data", required=True, help=DATA_HELP)
@data_options(training=True)
@click.option("--out", required=True, help="Run directory to write.")
@click.option("--student", default=None, help="Heavy student architecture (default: a copy of the teacher).")
@click.option("--student-weights", default=None, help="Checkpoint of --student.")
@run_options(resume=True)
@config_options(CompressConfig)
def compress_cmd(teacher, weights, model_args, embedding_output, allow_partial, data, out, student, student_weights,
                 recipe, **options) -> None:
    """Compress a trained retrieval model to TARGET-FLOPS of its cost (or TARGET-LATENCY of its time),
    keeping its mAP."""
    config = config_from(CompressConfig, options)
    config.target.latency = check_single_target(config.target.latency)
    if config.distill.extra:
        from ..distill import parse_spec

        parse_spec(config.distill.extra)
    run = RunOptions(recipe=recipe, **{k: options.pop(k) for k in ("device", "resume", "overwrite", "train_subset",
                                                                  "test_subset")})
    settings = train_settings(options, run.device)
    check_batch(config.train.batch_size, settings["instances"])
    config.train = dataclasses.replace(config.train, **settings)
    dataset = open_cli_data(data, options, teacher)
    source = ModelSource(teacher, weights, model_args, embedding_output, allow_partial)
    heavy = dataclasses.replace(source, spec=student, weights=student_weights) if student else None
    report = compress(source, dataset, config, out, run, student=heavy)
    if report:
        click.echo(Path(out, "report.md").read_text())
        click.echo(f"plot: {out}/accuracy_vs_flops.png")
