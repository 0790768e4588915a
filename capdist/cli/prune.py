"""``capdist prune``: baseline structured pruning with the same output format as ``compress``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ..methods import ModelSource, PruneConfig, RunOptions, prune
from ..methods.prune import UNUSED
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


@click.command("prune", cls=SectionedCommand)
@config_option
@click.option("--model", "--teacher", "teacher", required=True, help=MODEL_HELP)
@model_source_options
@click.option("--data", required=True, help=DATA_HELP)
@data_options(training=True)
@click.option("--out", required=True, help="Run directory to write.")
@run_options(resume=False)
@config_options(PruneConfig, exclude=UNUSED)
def prune_cmd(teacher, weights, model_args, embedding_output, allow_partial, data, out, recipe, **options) -> None:
    """Prune with a torch-pruning importance to TARGET-FLOPS (or TARGET-LATENCY), fine-tune, evaluate."""
    config = config_from(PruneConfig, options, exclude=UNUSED)
    config.target.latency = check_single_target(config.target.latency)
    if config.distill.extra:
        from ..distill import parse_spec

        parse_spec(config.distill.extra)
    run = RunOptions(recipe=recipe, **{k: options.pop(k) for k in ("device", "overwrite", "train_subset",
                                                                  "test_subset")})
    settings = train_settings(options, run.device)
    check_batch(config.train.batch_size, settings["instances"])
    config.train = dataclasses.replace(config.train, epochs=config.finetune_epochs, **settings)
    dataset = open_cli_data(data, options, teacher)
    prune(ModelSource(teacher, weights, model_args, embedding_output, allow_partial), dataset, config, out, run)
    click.echo(Path(out, "report.md").read_text())
