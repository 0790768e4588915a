"""Options every command that reads a model shares: weights, constructor arguments, which output
is the embedding, partial loading (CDD, CVPR 2023 starts from a user's trained model)."""

from __future__ import annotations

import functools
from pathlib import Path

import click


def model_source_options(func):
    """``--weights``, ``--model-arg`` / ``--teacher-arg`` (repeatable), ``--embedding-output``, ``--allow-partial``."""

    @click.option("--weights", default=None,
                  help="Checkpoint: safetensors, or a torch file read weights-only (state_dict / model / module / "
                       "net / ema containers, DDP and torch.compile prefixes, torchreid, fast-reid, timm).")
    @click.option("--teacher-arg", "--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
                  help="Argument of a package.module:factory or timm:NAME model (JSON literal, else a string); "
                       "repeatable.")
    @click.option("--embedding-output", default=None, metavar="KEY|INDEX",
                  help="Which entry of a dict or tuple output is the embedding (a tensor output is one).")
    @click.option("--allow-partial", is_flag=True,
                  help="Load the tensors that fit and list the rest (e.g. a dropped training-only head).")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from ..models.factory import parse_model_args

        kwargs["model_args"] = parse_model_args(kwargs["model_args"])
        return func(*args, **kwargs)

    return wrapper


def open_cli_model(spec: str, weights: str | None, model_args: dict, embedding_output, allow_partial: bool,
                   num_classes: int) -> object:
    """The model a command works on, its construction said in one line on stderr.

    A run directory loads as recorded; a torchvision name without weights builds the plain
    classification model (what ``inspect`` and ``profile`` describe); everything else goes through
    :func:`capdist.io.sources.open_model`.
    """
    from ..io.sources import open_model
    from ..models import build_model

    if not Path(spec).is_dir() and not weights and ":" not in spec:
        return build_model(spec, num_classes=num_classes, **model_args)
    opened = open_model(spec, weights, model_args, num_classes, embedding_output, allow_partial)
    click.echo(f"model: {opened.note}", err=True)
    return opened.model


def check_device(ctx, param, value: str) -> str:
    """``--device``: a device torch knows and this machine has."""
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise click.BadParameter(f"'{value}' is not a device (cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise click.BadParameter("CUDA is not available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise click.BadParameter(f"this machine has {torch.cuda.device_count()} CUDA device(s); "
                                     f"there is no {value}")
    elif device.type != "cpu":
        raise click.BadParameter(f"device type '{device.type}' is not supported (cpu or cuda)")
    return value


def check_pk_batch(ctx, param, value: int) -> int:
    """``--batch-size``: positive and a multiple of K (4 images per identity) for P x K batches."""
    if value < 4 or value % 4:
        raise click.BadParameter(f"{value} is not a positive multiple of 4 (P x K batches take 4 images per "
                                 "identity)")
    return value
