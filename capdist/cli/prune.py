"""``capdist prune``: baseline structured pruning with the same output format as ``compress``."""

from __future__ import annotations

from pathlib import Path

import click

from ..data import open_dataset
from ..engine import TrainConfig
from ..engine.prune import PruneConfig, prune_run
from ..pruners import METHODS
from .config_file import config_option
from .options import (
    check_batch,
    check_device,
    check_single_target,
    data_options,
    latency_target_options,
    model_source_options,
    report_options,
    train_settings,
)


@click.command("prune")
@config_option
@click.option("--model", "teacher", required=True,
              help="Run directory, torchvision name, package.module:factory or timm:NAME (with --weights).")
@model_source_options
@click.option("--method", required=True, help=f"One of: {', '.join(METHODS)}.")
@click.option("--target-flops", default=0.35, type=click.FloatRange(0, 1, min_open=True), show_default=True)
@latency_target_options
@click.option("--data", required=True)
@data_options(training=True)
@click.option("--finetune-epochs", default=5, type=click.IntRange(min=0), show_default=True)
@click.option("--distill", default="", help="Extra distillation terms during fine-tuning.")
@click.option("--round-to", type=click.IntRange(min=1), default=None)
@click.option("--global-pruning", is_flag=True, help="Rank channels across layers.")
@click.option("--train-subset", type=click.IntRange(min=1), default=None)
@click.option("--test-subset", type=click.IntRange(min=1), default=None, help="Evaluate on the first N test queries.")
@click.option("--batch-size", default=64, type=click.IntRange(min=1), show_default=True,
              help="Global batch, a multiple of --instances.")
@click.option("--lr", default=0.01, type=click.FloatRange(0, min_open=True), show_default=True,
              help="Fine-tuning uses a tenth of it.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, callback=check_device)
@report_options
@click.option("--out", required=True)
@click.option("--overwrite", is_flag=True)
def prune_cmd(teacher, weights, model_args, embedding_output, allow_partial, method,
               target_flops, target_latency, latency_batch, data, finetune_epochs, distill, round_to, global_pruning,
              train_subset, test_subset, batch_size, lr, seed, device, gallery, latency_input_size, out, overwrite,
              recipe, **data_kw) -> None:
    """Prune with a torch-pruning importance to TARGET-FLOPS (or TARGET-LATENCY), fine-tune, evaluate."""
    target_latency = check_single_target(target_latency)
    if method not in METHODS:
        raise click.BadParameter(f"unknown method '{method}'; valid: {', '.join(METHODS)}", param_hint="--method")
    if distill:
        from ..distill import parse_spec

        parse_spec(distill)
    settings = train_settings(data_kw, device)
    check_batch(batch_size, settings["instances"])
    dataset = open_dataset(data, data_kw["image_size"], data_kw["skip_bad_images"], data_kw["cache_images"])
    cfg = PruneConfig(method=method, target_flops=target_flops, target_latency=target_latency,
                      latency_batch=latency_batch, round_to=round_to, global_pruning=global_pruning,
                      finetune_epochs=finetune_epochs, distill=distill, latency_input_size=latency_input_size,
                      gallery=gallery,
                      train=TrainConfig(epochs=finetune_epochs, batch_size=batch_size, lr=lr, seed=seed,
                                         **settings))
    prune_run(teacher, weights, dataset, cfg, out, train_subset=train_subset, test_subset=test_subset,
              overwrite=overwrite, device=device, model_args=model_args, embedding_output=embedding_output,
              allow_partial=allow_partial, recipe=recipe)
    click.echo(Path(out, "report.md").read_text())
