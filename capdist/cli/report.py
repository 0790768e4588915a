"""``capdist report RUN_DIR... --out DIR``: one comparison table and plots for many runs."""

from __future__ import annotations

from pathlib import Path

import click

from ..benchmarks.compare import compare_runs
from ..benchmarks.retime import retime_runs
from ..io.atomic import atomic_write_json
from ..measure.timer import check_timer
from ..methods.settings import timer_names
from .options import DEVICE_HELP, check_device


@click.command("report")
@click.argument("runs", nargs=-1, required=True)
@click.option("--out", required=True)
@click.option("--retime", "teacher", default=None,
              help="Teacher run directory: time every model and the teacher side by side in this process "
                   "(interleaved rounds) instead of using each run's own latency.")
@click.option("--rounds", default=7, type=click.IntRange(min=1), show_default=True,
              help="Interleaved timing rounds with --retime.")
@click.option("--device", default="auto", show_default=True, callback=check_device,
              help="Where --retime times: " + DEVICE_HELP)
@click.option("--latency-backend", type=click.Choice(timer_names()), default="eager", show_default=True,
              help="Runtime --retime times in.")
def report_cmd(runs: tuple[str, ...], out: str, teacher: str | None, rounds: int, device: str,
               latency_backend: str) -> None:
    """Table (Markdown, CSV) and mAP-vs-FLOPs / mAP-vs-latency plots with the Pareto front marked."""
    latency = None
    if teacher:
        check_timer(latency_backend, device)
        compare_runs(list(runs), out)  # checks the runs before minutes of timing
        latency = retime_runs(list(runs), teacher, rounds=rounds, device=device, timer=latency_backend)
        atomic_write_json(Path(out) / "latency.json", latency)
    compare_runs(list(runs), out, latency=latency)
    click.echo(Path(out, "comparison.md").read_text())
    click.echo(f"plots: {out}/map_vs_flops.png, {out}/map_vs_latency.png")
