"""``capdist train`` and ``capdist eval``: retrieval teachers and their test metrics."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from ..engine import TrainConfig
from ..engine.evaluation import evaluate_models
from ..methods import train_retrieval
from .config_file import config_option
from .from_config import SectionedCommand, config_from, config_options
from .options import (
    DATA_HELP,
    DEVICE_HELP,
    check_batch,
    check_device,
    data_options,
    model_source_options,
    open_cli_data,
    train_settings,
)


def _print_metrics(label: str, m: dict) -> None:
    click.echo(f"{label}: mAP {m['mAP']:.2%}  R@1 {m['R@1']:.2%}  R@5 {m['R@5']:.2%}  "
               f"R@10 {m['R@10']:.2%}  mINP {m['mINP']:.2%}  ({m['queries']} queries)")


@click.command("train", cls=SectionedCommand)
@config_option
@click.option("--model", "model_name", required=True, help="torchvision name or package.module:factory.")
@click.option("--data", required=True, help=DATA_HELP)
@data_options(training=True)
@click.option("--out", required=True, help="Run directory to write.")
@click.option("--train-subset", type=click.IntRange(min=1), default=None, help="Use this many training images.")
@click.option("--embed-dim", type=click.IntRange(min=1), default=None, help="Project the embedding to this width.")
@click.option("--last-stride", type=click.IntRange(1, 2), default=2, show_default=True,
              help="Stride of a ResNet's last stage (1: the re-ID setting, twice the final feature map).")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Backbone constructor argument (JSON literal, else a string); repeatable.")
@click.option("--weights", default=None, help="Initial weights (safetensors or weights-only .pt).")
@click.option("--checkpoint-every", default=TrainConfig().checkpoint_every, type=click.IntRange(min=0),
              show_default=True, help="Steps between checkpoints (0: every epoch).")
@click.option("--device", default="auto", show_default=True, callback=check_device, help=DEVICE_HELP)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the run in --out (its files are removed first).")
@config_options(TrainConfig, section="Training")
def train_cmd(model_name, data, out, train_subset, embed_dim, last_stride, model_args, weights, checkpoint_every,
              device, resume, overwrite, recipe, **data_kw) -> None:
    """Train a retrieval model (CE + triplet) and report its test retrieval metrics."""
    from ..models.factory import parse_model_args

    trained = config_from(TrainConfig, data_kw)
    settings = train_settings(data_kw, device)
    check_batch(trained.batch_size, settings["instances"])
    backbone_kwargs = parse_model_args(model_args)
    if last_stride == 1:
        backbone_kwargs["last_stride"] = 1
    dataset = open_cli_data(data, data_kw)
    cfg = dataclasses.replace(trained, checkpoint_every=checkpoint_every, **settings)
    result = train_retrieval(model_name, dataset, cfg, out, train_subset=train_subset, embed_dim=embed_dim,
                             resume=resume, overwrite=overwrite, device=device, weights=weights,
                             backbone_kwargs=backbone_kwargs or None, recipe=recipe)
    if result:
        _print_metrics(f"{out} on {data}", result)


@click.command("eval")
@click.option("--model", "model_dir", required=True,
              help="Query encoder: run directory, or a model source with --weights.")
@model_source_options
@click.option("--data", required=True)
@data_options(training=False)
@click.option("--gallery-model", default=None, help="Run directory encoding the gallery (asymmetric).")
@click.option("--flip-test", is_flag=True, help="Average each embedding with its mirror image's.")
@click.option("--rerank", is_flag=True, help="k-reciprocal re-ranking (Zhong et al., CVPR 2017; k1=20, k2=6, "
                                             "lambda=0.3), as torchreid's rerank and fast-reid's TEST.RERANK.")
@click.option("--device", default="auto", show_default=True, callback=check_device, help=DEVICE_HELP)
@click.option("--json", "as_json", is_flag=True)
def eval_cmd(model_dir, weights, model_args, embedding_output, allow_partial, data, gallery_model, flip_test,
             rerank, device, as_json, **reading) -> None:
    """Retrieval metrics of a trained or compressed model (mAP, R@1/5/10, mINP)."""
    from ..io.run_dir import load_retrieval
    from ..io.sources import open_model

    dataset = open_cli_data(data, reading, model_dir)
    if Path(model_dir).is_dir() and not weights:
        model = load_retrieval(model_dir)
    else:
        opened = open_model(model_dir, weights, model_args, dataset.num_classes, embedding_output, allow_partial)
        click.echo(f"model: {opened.note}", err=True)
        model = opened.model
    gallery = load_retrieval(gallery_model) if gallery_model else None
    result = evaluate_models(model, dataset, gallery, device=device, flip=flip_test, workers=reading["workers"],
                             rerank=rerank)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_metrics(f"{model_dir} on {data}" + (f" (gallery by {gallery_model})" if gallery else ""),
                       result)
