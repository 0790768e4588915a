"""``capdist demo``: train a small teacher on Fashion-MNIST, compress it to 35% of its FLOPs."""

from __future__ import annotations

import click

from ..demo import run_demo


@click.command("demo")
@click.option("--quick", is_flag=True, help="Fewer images and epochs (about 3 minutes).")
@click.option("--target", default=0.35, show_default=True, help="FLOPs fraction to reach.")
@click.option("--root", default="runs/demo", show_default=True, help="Where the teacher and results go.")
def demo_cmd(quick: bool, target: float, root: str) -> None:
    """Train a teacher (cached), compress it with CDD, print the report and the plot's path."""
    run_demo(quick=quick, root=root, target=target, echo=click.echo)
