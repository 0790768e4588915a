"""``capdist compress``: Capacity Dynamic Distillation of a trained retrieval model."""

from __future__ import annotations

from pathlib import Path

import click

from ..data import open_dataset
from ..engine import TrainConfig
from ..engine.compress import CompressConfig, compress
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


@click.command("compress")
@config_option
@click.option("--teacher", required=True,
              help="Run directory, torchvision name, package.module:factory or timm:NAME (with --weights).")
@model_source_options
@click.option("--data", required=True)
@data_options(training=True)
@click.option("--out", required=True)
@click.option("--target-flops", default=0.35, type=click.FloatRange(0, 1, min_open=True), show_default=True,
              help="Fraction of the teacher's FLOPs.")
@latency_target_options
@click.option("--schedule", type=click.Choice(["retrieval", "norm"]), default="retrieval", show_default=True)
@click.option("--scope", type=click.Choice(["internal", "all"]), default="all", show_default=True)
@click.option("--residual-compactor", type=click.Choice(["diagonal", "dense"]), default="diagonal",
              show_default=True,
              help="Compactors of residual streams (scope all): per-channel scales (a resnet50 step 1.22x a plain "
                   "one) or dense C x C maps as ResRep (2.06x).")
@click.option("--epochs", default=10, type=click.IntRange(min=1), show_default=True)
@click.option("--mask-warmup", default=1.0, type=click.FloatRange(min=0), show_default=True,
              help="Epochs before masks start.")
@click.option("--mask-until", default=0.6, type=click.FloatRange(0, 1), show_default=True,
              help="Fraction of training by which the masks reach the target.")
@click.option("--mask-ratio", default=0.5, type=click.FloatRange(0, 1, min_open=True, max_open=True), show_default=True,
              help="Low-contribution fraction (retrieval).")
@click.option("--rggr-neighbours", type=click.Choice(["student", "teacher"]), default="student", show_default=True,
              help="Retrieval schedule's neighbour search: the student feature ranks the teacher bank (ours), or the "
                   "teacher feature ranks a bank holding the batch (the authors' code).")
@click.option("--rggr-k", type=click.IntRange(min=1), default=None,
              help="Neighbours per sample (default: 5 student-ranked, 2 teacher-ranked as the authors use).")
@click.option("--penalty", default=4e-3, type=click.FloatRange(min=0), show_default=True, help="Group-lasso strength.")
@click.option("--round-to", default=None, type=click.IntRange(min=1),
              help="Kept widths are multiples of this (default: 1; under --target-latency 1 or 8, whichever a "
                   "side-by-side timing of two pruned probes shows to be faster).")
@click.option("--min-ratio", default=0.2, type=click.FloatRange(0, 1), show_default=True,
              help="Every layer keeps at least this fraction of its channels.")
@click.option("--feature-loss", type=click.Choice(["block", "stage"]), default="block", show_default=True,
              help="CDD's per-block loss before the compactors (authors' code) or pooled stage outputs (MSE).")
@click.option("--cross-nce", default=CompressConfig.cross_nce, type=click.FloatRange(min=0), show_default=True,
              help="Weight of the cross-model contrastive term: each compressed embedding must retrieve its own "
                   "image's teacher embedding among the batch's (0: off).")
@click.option("--distill", default="", help="Extra terms, e.g. 'rkd_distance:25,fitnet:2@backbone.layer3'.")
@click.option("--finetune-epochs", default=0, type=click.IntRange(min=0), show_default=True)
@click.option("--student", default=None, help="Heavy student architecture (default: a copy of the teacher).")
@click.option("--student-weights", default=None)
@click.option("--train-subset", type=click.IntRange(min=1), default=None)
@click.option("--test-subset", type=click.IntRange(min=1), default=None, help="Evaluate on the first N test queries.")
@click.option("--batch-size", default=64, type=click.IntRange(min=1), show_default=True,
              help="Global batch, a multiple of --instances.")
@click.option("--lr", default=0.01, type=click.FloatRange(0, min_open=True), show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, callback=check_device)
@report_options
@click.option("--resume", is_flag=True)
@click.option("--overwrite", is_flag=True)
def compress_cmd(teacher, weights, model_args, embedding_output, allow_partial, data, out, target_flops,
                 target_latency, latency_batch, schedule, scope, residual_compactor, epochs, mask_warmup, mask_until,
                 mask_ratio, rggr_neighbours, rggr_k, penalty, round_to,
                 min_ratio, feature_loss, cross_nce, distill, finetune_epochs, student, student_weights, train_subset,
                 test_subset, batch_size, lr, seed, device, gallery, latency_input_size, resume, overwrite,
                 recipe, **data_kw) -> None:
    """Compress a trained retrieval model to TARGET-FLOPS of its cost (or TARGET-LATENCY of its time),
    keeping its mAP."""
    target_latency = check_single_target(target_latency)
    if distill:
        from ..distill import parse_spec

        parse_spec(distill)
    settings = train_settings(data_kw, device)
    check_batch(batch_size, settings["instances"])
    dataset = open_dataset(data, data_kw["image_size"], data_kw["skip_bad_images"], data_kw["cache_images"])
    cfg = CompressConfig(target_flops=target_flops, target_latency=target_latency, latency_batch=latency_batch,
                         schedule=schedule, scope=scope, residual_compactor=residual_compactor,
                         mask_warmup=mask_warmup,
                         mask_until=mask_until, ratio=mask_ratio, neighbours=rggr_neighbours, k=rggr_k,
                         penalty=penalty, round_to=round_to, min_ratio=min_ratio, feature_loss=feature_loss,
                         cross_nce=cross_nce, distill=distill, finetune_epochs=finetune_epochs,
                         latency_input_size=latency_input_size, gallery=gallery,
                         train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, warmup_epochs=0.5,
                                           **settings))
    report = compress(teacher, weights, dataset, cfg, out, student_name=student, student_weights=student_weights,
                      train_subset=train_subset, resume=resume, overwrite=overwrite, device=device,
                      test_subset=test_subset, model_args=model_args, embedding_output=embedding_output,
                      allow_partial=allow_partial, recipe=recipe)
    if report:
        click.echo(Path(out, "report.md").read_text())
        click.echo(f"plot: {out}/accuracy_vs_flops.png")
