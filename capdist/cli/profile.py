"""``capdist profile MODEL``: params, FLOPs (fvcore and thop) and latency."""

from __future__ import annotations

import json

import click
import torch

from ..io.export import EmbeddingOnly
from ..measure import count, measure_latency
from ..measure.timer import check_timer
from ..methods.settings import ReportConfig, timer_names
from ..models import parse_input_size
from .options import DEVICE_HELP, check_device, model_source_options, open_cli_model


@click.command("profile")
@click.argument("model")
@model_source_options
@click.option("--input-size", default="224x224", show_default=True,
              help="HxW (three channels) or CxHxW of one image.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Batch for the second timing.")
@click.option("--repeats", default=20, type=click.IntRange(min=1), show_default=True, help="Timed passes.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: torch's).")
@click.option("--device", default="auto", show_default=True, callback=check_device, help=DEVICE_HELP)
@click.option("--latency-backend", type=click.Choice(timer_names()), default=ReportConfig().latency_backend,
              show_default=True, help="Runtime the latency is measured in.")
@click.option("--num-classes", default=1000, show_default=True, help="Classes of the model's classifier.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def profile_cmd(model: str, weights, model_args, embedding_output, allow_partial, input_size: str,
                batch_size: int, repeats: int, threads: int | None,
                device: str, latency_backend: str, num_classes: int, as_json: bool) -> None:
    """Count params and FLOPs (fvcore vs thop) and time batch 1 and batch N."""
    size = parse_input_size(input_size)
    check_timer(latency_backend, device)
    net = EmbeddingOnly(open_cli_model(model, weights, model_args, embedding_output, allow_partial,
                                       num_classes)).eval()
    counts = count(net, torch.randn(1, *size))
    one = measure_latency(net, size, 1, repeats, device=device, threads=threads, breakdown=True,
                          timer=latency_backend)
    many = measure_latency(net, size, batch_size, repeats, device=device, threads=threads, timer=latency_backend)
    report = {"model": model, "input_size": list(size), **counts.to_dict(),
              "latency": [one.to_dict(), many.to_dict()]}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    flag = "  (differ by more than 1%: thop also counts BN, pooling and activations)" \
        if counts.flagged else ""
    click.echo(f"{model} @ {input_size}: params {counts.params / 1e6:.3f} M, "
               f"fvcore {counts.fvcore_flops / 1e9:.4f} GFLOPs, thop {counts.thop_macs / 1e9:.4f} "
               f"GMACs, gap {counts.disagreement:.2%}{flag}")
    if counts.uncounted_ops:
        click.echo("  fvcore did not count: " + ", ".join(
            f"{k} x{v}" for k, v in sorted(counts.uncounted_ops.items())))
    for r in (one, many):
        click.echo(f"  latency batch {r.batch_size:>3} in {r.runtime} on {r.device} ({r.threads} threads): "
                   f"p50 {r.p50_ms:.2f} ms, p90 {r.p90_ms:.2f} ms")
    click.echo("  slowest layers (batch 1): " + ", ".join(
        f"{k} {v:.2f} ms" for k, v in list(one.layers_ms.items())[:5]))
