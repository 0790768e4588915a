"""``capdist report RUN_DIR... --out DIR``: one comparison table and plots for many runs."""

from __future__ import annotations

from pathlib import Path

import click

from ..benchmarks.compare import compare_runs


@click.command("report")
@click.argument("runs", nargs=-1, required=True)
@click.option("--out", required=True)
def report_cmd(runs: tuple[str, ...], out: str) -> None:
    """Table (Markdown, CSV) and mAP-vs-FLOPs / mAP-vs-latency plots with the Pareto front marked."""
    compare_runs(list(runs), out)
    click.echo(Path(out, "comparison.md").read_text())
    click.echo(f"plots: {out}/map_vs_flops.png, {out}/map_vs_latency.png")
