"""``capdist export DIR --format onnx|torchscript [--data D]``."""

from __future__ import annotations

import click

from ..io.export import export_run


@click.command("export")
@click.argument("run_dir")
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), required=True)
@click.option("--out", default=None, help="File to write (default: RUN_DIR/model.onnx or model.torchscript.pt).")
@click.option("--data", default=None, help="Also evaluate retrieval with the exported file on this dataset.")
def export_cmd(run_dir: str, fmt: str, out: str | None, data: str | None) -> None:
    """Export the embedding path and compare it with PyTorch (and re-evaluate with --data)."""
    result = export_run(run_dir, fmt, out)
    click.echo(f"wrote {result.path}; max |{fmt} - pytorch| = {result.max_abs_diff:.2e} on sample inputs")
    if result.fixed_batch:
        click.echo(f"note: exported with a fixed batch of {result.fixed_batch}: the model's forward reads its "
                   "input's shape, which the ONNX exporter cannot keep dynamic", err=True)
    if data:
        from ..data import open_dataset
        from ..engine.evaluation import evaluate_models
        from ..io.run_dir import load_retrieval

        dataset = open_dataset(data)
        exported = evaluate_models(result.module, dataset)
        reference = evaluate_models(load_retrieval(run_dir), dataset)
        click.echo(f"retrieval with the exported file: mAP {exported['mAP']:.2%}  R@1 {exported['R@1']:.2%} "
                   f"(PyTorch: mAP {reference['mAP']:.2%}  R@1 {reference['R@1']:.2%})")
