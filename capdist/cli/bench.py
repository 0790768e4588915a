"""``capdist bench fmnist --profile quick|standard``: the side-by-side study."""

from __future__ import annotations

from pathlib import Path

import click

from ..benchmarks.study import PROFILES, run_study
from .config_file import config_option
from .options import DEVICE_HELP, check_device


@click.command("bench")
@config_option
@click.argument("dataset", type=click.Choice(["fmnist", "fmnist-open", "digits"]))
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="quick", show_default=True)
@click.option("--out", default=None, help="Default: docs/benchmarks/<dataset>-<profile>.")
@click.option("--device", default="auto", show_default=True, callback=check_device, help=DEVICE_HELP)
def bench_cmd(dataset: str, profile: str, out: str | None, device: str, recipe: dict) -> None:
    """CDD vs baseline pruners at equal FLOPs and training budget."""
    from ..io.recipe import RECIPE_FILE, write_recipe

    out = out or f"docs/benchmarks/{dataset}-{profile}"
    run_study(dataset, profile, out, device=device, echo=click.echo)
    write_recipe(Path(out) / RECIPE_FILE, "bench", {**recipe, "out": out})
