"""``capdist bench fmnist --profile quick|standard``: the side-by-side study."""

from __future__ import annotations

import click

from ..benchmarks.study import PROFILES, run_study
from .options import check_device


@click.command("bench")
@click.argument("dataset", type=click.Choice(["fmnist", "fmnist-open", "digits"]))
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="quick", show_default=True)
@click.option("--out", default=None, help="Default: docs/benchmarks/<dataset>-<profile>.")
@click.option("--device", default="cpu", show_default=True, callback=check_device)
def bench_cmd(dataset: str, profile: str, out: str | None, device: str) -> None:
    """CDD vs baseline pruners at equal FLOPs and training budget."""
    run_study(dataset, profile, out or f"docs/benchmarks/{dataset}-{profile}", device=device, echo=click.echo)
