"""``capdist inspect MODEL``: the pre-flight report before any training."""

from __future__ import annotations

import json

import click
import torch

from ..compactor import plan_groups
from ..compactor.placement import built_kind
from ..methods.settings import CompactorSettings
from ..models import parse_input_size
from ..models.view import unwrapped
from .from_config import SectionedCommand, config_from, config_options
from .options import model_source_options, open_cli_model


def inspect_report(model_spec: str, input_size: str, compactors: CompactorSettings, num_classes: int,
                   weights: str | None = None, model_args: dict | None = None, embedding_output=None,
                   allow_partial: bool = False) -> dict:
    """Which groups get compactors (and of which kind, exactly as ``compress`` builds them), which are
    pinned, which cannot and why."""
    model = unwrapped(open_cli_model(model_spec, weights, model_args or {}, embedding_output, allow_partial,
                                 num_classes))
    x = torch.randn(1, *parse_input_size(input_size))
    placement = compactors.placement()
    chosen, skipped = plan_groups(model, x, placement)
    rows = []
    for spec in chosen:
        rows.append({"group": spec.name, "channels": spec.channels, "status": "compacted",
                     "compactors": [f"{built_kind(spec, k, placement)} after {a}"
                                    for k, a in zip(spec.kinds, spec.anchors, strict=True)],
                     "residual": spec.residual})
    for spec, reason in skipped:
        status = "pinned" if reason.startswith(("pinned", "its channels are a model output")) else (
            "out of scope" if reason.startswith(("tied by", "excluded")) else "unsupported")
        rows.append({"group": spec.name, "channels": spec.channels, "status": status,
                     "reason": reason, "residual": spec.residual})
    return {"model": model_spec, "input_size": input_size, "scope": compactors.scope,
            "residual_compactor": compactors.residual_compactor,
            "internal_compactor": compactors.internal_compactor, "groups": rows}


@click.command("inspect", cls=SectionedCommand)
@click.argument("model")
@model_source_options
@click.option("--input-size", default="224x224", show_default=True,
              help="HxW (three channels) or CxHxW of one image.")
@click.option("--num-classes", default=1000, show_default=True, help="Classes of the model's classifier.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_options(CompactorSettings, exclude=("penalty", "compactor_momentum"))
def inspect_cmd(model: str, weights, model_args, embedding_output, allow_partial, input_size: str,
                num_classes: int, as_json: bool, **options) -> None:
    """Pre-flight report: channel groups, compactor kinds (as ``compress`` builds them), what is pinned or
    unsupported."""
    compactors = config_from(CompactorSettings, options)
    scope = compactors.scope
    report = inspect_report(model, input_size, compactors, num_classes, weights, model_args, embedding_output,
                            allow_partial)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    groups = report["groups"]
    counts = {s: sum(r["status"] == s for r in groups)
              for s in ("compacted", "pinned", "out of scope", "unsupported")}
    click.echo(f"{model} (scope={scope}, input {input_size}): {len(groups)} channel groups, "
               + ", ".join(f"{v} {k}" for k, v in counts.items()))
    for r in groups:
        detail = "; ".join(r["compactors"]) if r["status"] == "compacted" else r["reason"]
        click.echo(f"  {r['status']:<12} {r['group']:<40} C={r['channels']:<5} {detail}")
