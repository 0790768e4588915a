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
