"""Options every command that reads a model shares: weights, constructor arguments, which output
is the embedding, partial loading."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import click

MODEL_HELP = "Run directory, torchvision name, package.module:factory or timm:NAME (with --weights)."
DATA_HELP = ("fmnist[:ROOT], fmnist-open, fmnist-val and fmnist-open-val (validation splits carved from the "
             "training images), digits, folder:PATH (one folder per class), reid:PATH (Market-1501 / "
             "DukeMTMC / MSMT17 layout).")


def run_options(resume: bool = True):
    """``--train-subset``, ``--test-subset``, ``--device``, ``--overwrite`` (and ``--resume``)."""


    def decorate(func):
        opts = [
            click.option("--train-subset", type=click.IntRange(min=1), default=None,
                         help="Train on this many images drawn by the seed."),
            click.option("--test-subset", type=click.IntRange(min=1), default=None,
                         help="Evaluate on the first N test queries."),
            click.option("--device", default="auto", show_default=True, callback=check_device, help=DEVICE_HELP),
            click.option("--overwrite", is_flag=True, help="Replace the run in --out (its files are removed first)."),
        ]
        if resume:
            opts.append(click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint."))
        for opt in reversed(opts):
            func = opt(func)
        return func

    return decorate


def model_source_options(func):
    """``--weights``, ``--model-arg`` / ``--teacher-arg`` (repeatable), ``--embedding-output``, ``--allow-partial``."""

    @click.option("--weights", default=None,
                  help="Checkpoint: safetensors, or a torch file read weights-only (state_dict / model / module / "
                       "net / ema containers, DDP and torch.compile prefixes, torchreid, fast-reid, timm).")
    @click.option("--model-arg", "--teacher-arg", "model_args", multiple=True, metavar="KEY=VALUE",
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


DEVICE_HELP = "auto (CUDA when present, else the CPU), cpu, cuda or cuda:N."


def check_device(ctx, param, value: str) -> str:
    """``--device``: a device torch knows and this machine has (``auto`` resolved here)."""
    import torch

    from ..engine.distributed import resolve_device

    value = resolve_device(value)
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


def _parsed(parse, error: type[Exception]):
    """A click callback that parses a text option with ``parse`` (None stays None) and turns
    ``error`` into click's one-line bad-parameter message."""

    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            return parse(value)
        except error as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


def _image_size(ctx, param, value):
    """``HxW`` as a tuple of two positive integers (None stays None)."""
    from ..data import parse_image_size
    from ..errors import DataError

    return _parsed(parse_image_size, DataError)(ctx, param, value)


def open_cli_data(spec: str, options: dict, model: str = ""):
    """The dataset the data options describe (the pixel options are consumed); a fast-reid ``model``
    takes 0-255 pixels unless ``--pixel-range`` says otherwise."""
    from ..data import open_dataset
    from ..data.pixels import PixelContract, parse_channels

    pixel_range = options.pop("pixel_range") or (255 if str(model).startswith("fastreid:") else 1)
    pixels = PixelContract(int(pixel_range), parse_channels(options.pop("pixel_mean")),
                           parse_channels(options.pop("pixel_std")))
    return open_dataset(spec, options["image_size"], options["skip_bad_images"], options["cache_images"], pixels)


def data_options(training: bool = True):
    """Options that decide how images are read and, for training commands, augmented.

    Reading: ``--image-size``, ``--workers``, ``--cache-images``, ``--skip-bad-images``, the pixel
    contract ``--pixel-range`` / ``--pixel-mean`` / ``--pixel-std``; training adds
    ``--instances`` (K), ``--pad``, ``--random-erasing``, ``--amp`` and ``--channels-last``.
    """

    def decorate(func):
        from ..engine import TrainConfig

        t, help_of = TrainConfig(), {f.name: f.metadata.get("help", "") for f in dataclasses.fields(TrainConfig)}
        opts = [
            click.option("--image-size", default=None, callback=_image_size, metavar="HxW",
                         help="Height x width the model sees, e.g. 256x128 (default: 256x128 re-ID, 64x64 folders, "
                              "native for fmnist/digits)."),
            click.option("--workers", type=click.IntRange(min=0), default=None,
                         help="Loader processes (default: the cores, at most 8, for images read from disk; 0 for data "
                              "in memory)."),
            click.option("--cache-images", is_flag=True, help="Decode every image once and keep it in memory."),
            click.option("--skip-bad-images", is_flag=True, help="Skip unreadable images (with a warning count)."),
            click.option("--pixel-range", type=click.Choice(["1", "255"]), default=None,
                         help="Pixel range the model takes: 1 for [0, 1] (torchvision, timm, torchreid), 255 for "
                              "0-255 (alone it feeds raw pixels; the default for fastreid: models, which "
                              "normalise inside)  [default: 1]."),
            click.option("--pixel-mean", default=None, metavar="R,G,B",
                         help="Mean subtracted before the model, in --pixel-range units (default: ImageNet's for "
                              "range 1, none for 255)."),
            click.option("--pixel-std", default=None, metavar="R,G,B",
                         help="Std divided by before the model, in --pixel-range units (default: ImageNet's for "
                              "range 1, none for 255)."),
        ]
        if training:
            opts += [
                click.option("--instances", default=t.instances, type=click.IntRange(min=1), show_default=True,
                             help=help_of["instances"]),
                click.option("--pad", default=t.pad, type=click.IntRange(min=0), show_default=True,
                             help=help_of["pad"]),
                click.option("--random-erasing", default=t.erase, type=click.FloatRange(0, 1), show_default=True,
                             help=help_of["erase"]),
                click.option("--amp", type=click.Choice(["off", "bf16", "fp16"]), default=t.amp or "off",
                             show_default=True, help=help_of["amp"]),
                click.option("--channels-last", is_flag=True, default=t.channels_last, help=help_of["channels_last"]),
                click.option("--quiet", is_flag=True, help="No progress bars or phase lines; errors and the result "
                                                           "only."),
            ]
        for opt in reversed(opts):
            func = opt(func)
        return func

    return decorate


def check_batch(batch_size: int, instances: int) -> None:
    """A P x K batch: positive and a multiple of K."""
    if batch_size < instances or batch_size % instances:
        raise click.BadParameter(f"{batch_size} is not a positive multiple of K={instances} (--instances)",
                                 param_hint="--batch-size")


def train_settings(kwargs: dict, device: str) -> dict:
    """The :class:`~capdist.engine.TrainConfig` fields the data options set (removed from ``kwargs``),
    checked against ``device``."""
    import torch

    amp = kwargs.pop("amp", "off")
    if amp == "fp16" and torch.device(device).type != "cuda":
        raise click.BadParameter("--amp fp16 needs CUDA (gradient scaling); use --amp bf16 on the CPU",
                                 param_hint="--amp")
    quiet = kwargs.pop("quiet", False)
    if quiet:
        import logging

        logging.getLogger("capdist").setLevel(logging.WARNING)
    return {"instances": kwargs.pop("instances"), "pad": kwargs.pop("pad"), "erase": kwargs.pop("random_erasing"),
            "amp": "" if amp == "off" else amp, "channels_last": kwargs.pop("channels_last"),
            "workers": kwargs.get("workers"), "progress": not quiet}


def input_size_option(ctx, param, value):
    """``HxW``, ``CxHxW`` or ``C,H,W`` as a (C, H, W) tuple of positive integers (None stays None)."""
    from ..errors import UnsupportedModel
    from ..models.factory import parse_input_size

    return _parsed(parse_input_size, UnsupportedModel)(ctx, param, value)


def check_single_target(target_latency: float | None) -> float | None:
    """The latency target in effect: both flags given is an error; a flag beats a recipe's key (a
    recipe, or a run's own ``config.yaml``, that holds both means its latency target).

    Raises:
        click.UsageError: ``--target-flops`` and ``--target-latency`` both on the command line.
    """
    ctx = click.get_current_context()
    flops, latency = ctx.get_parameter_source("target_flops"), ctx.get_parameter_source("target_latency")
    source = click.core.ParameterSource
    if target_latency is None:
        return None
    if flops == latency == source.COMMANDLINE:
        raise click.UsageError("give --target-flops or --target-latency, not both")
    if flops == source.COMMANDLINE and latency == source.DEFAULT_MAP:
        return None
    return target_latency
