"""``capdist losses``: every distillation loss with its paper, needs and defaults."""

from __future__ import annotations

import json

import click

from ..distill import describe


def losses_markdown() -> str:
    """The registry as a Markdown table (the README shows the same)."""
    rows = ["| loss | family | paper | needs | default weight | parameters |", "|---|---|---|---|---|---|"]
    for r in describe():
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        rows.append(f"| `{r['name']}` | {r['family']} | {r['paper']} | {r['needs']} | {r['weight']:g} | {params} |")
    return "\n".join(rows)


@click.command("losses")
@click.option("--json", "as_json", is_flag=True)
def losses_cmd(as_json: bool) -> None:
    """List the distillation losses (use them with --distill 'kd:1,fitnet:2@backbone.layer3')."""
    click.echo(json.dumps(describe(), indent=2) if as_json else losses_markdown())
