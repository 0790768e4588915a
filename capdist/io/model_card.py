"""A run directory's ``README.md``: the model card a model repository (the Hugging Face Hub, an internal
registry) shows first: what the model is, what it costs and retrieves beside its teacher, the input it
takes, how to load, export and re-make it.

Example:
    >>> card = model_card(rows, extra, config, "runs/cdd35")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from .atomic import atomic_write_bytes

CARD = "README.md"


def _runtime(row: dict) -> str:
    """The runtime the row's latency was measured in, as a reader names it."""
    runtime = row.get("latency_runtime", "eager")
    return "PyTorch (eager)" if runtime == "eager" else runtime


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"


def _row(row: dict, teacher: dict) -> str:
    sym, asym = row["symmetric"], row.get("asymmetric") or {}
    ratio = row.get("latency_ratio_b1")
    return (f"| {row['name']} | {row['flops'] / teacher['flops']:.3f} | {row['params'] / 1e6:.2f} M | "
            f"{_pct(sym.get('mAP'))} | {_pct(sym.get('R@1'))} | {_pct(asym.get('mAP'))} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} |")


def _input(config: dict) -> list[str]:
    shape = config.get("image_shape") or []
    mean, std = config.get("mean"), config.get("std")
    lines = [f"- images: {' x '.join(map(str, shape))} (channels x height x width), RGB"]
    if mean and std:
        lines.append(f"- pixels in [0, 1], then `(pixel - mean) / std` per channel with mean "
                     f"{[round(m, 6) for m in mean]} and std {[round(s, 6) for s in std]}")
    return lines


def _remake(out: Path) -> list[str]:
    recipe = out / "config.yaml"
    if not recipe.is_file():
        return []
    import yaml

    command = (yaml.safe_load(recipe.read_text()) or {}).get("command", "compress")
    return ["## Re-make", "", f"`config.yaml` holds every option of the run: `capdist {command} --config "
            f"{recipe}`.", ""]


def model_card(rows: list[dict], extra: dict, config: dict, out: str | Path) -> str:
    """The card's Markdown for the run in ``out`` (``rows``: the teacher first, the delivered model last)."""
    teacher, final = rows[0], rows[-1]
    method, data = extra.get("method", "capdist"), extra.get("data", config.get("data", ""))
    gallery = (f"; queries against the teacher's gallery {_pct(final['asymmetric'].get('mAP'))}"
               if final.get("asymmetric") else "")
    lines = ["---", "library_name: capdist", "tags: [image-retrieval, model-compression, capdist]", "---", "",
             f"# {Path(out).name}", "",
             f"A retrieval model made by capdist ({method}) on `{data}`: {final['flops'] / teacher['flops']:.1%} of "
             f"the teacher's FLOPs, mAP {_pct(final['symmetric'].get('mAP'))} (teacher "
             f"{_pct(teacher['symmetric'].get('mAP'))}){gallery}.", "",
             "| model | FLOPs (x teacher) | params | mAP | R@1 | mAP, teacher gallery | latency b1 (x teacher) |",
             "|---|---|---|---|---|---|---|", *(_row(r, teacher) for r in rows), "",
             f"Latency measured side by side with the teacher on {final.get('latency_device', '?')} "
             f"({final.get('latency_threads', '?')} threads) in {_runtime(final)}; `report.md` has every figure.", "",
             "## Input", "", *_input(config), "",
             "## Use", "", "```python", "import capdist", "",
             f'model = capdist.load("{out}")  # the original class, pruned; eval mode', "```", "",
             f"Export: `capdist export {out} --format onnx` (checks the file against PyTorch).", "",
             *_remake(Path(out)), "## Files", "",
             "`model.safetensors` (weights), `config.json` (architecture and preprocessing), `plan.json` (the "
             "pruned widths), `report.md` / `report.json` (every figure), `sample.safetensors` (inputs and "
             "embeddings for reload checks).", ""]
    return "\n".join(lines)


def write_model_card(rows: list[dict], extra: dict, config: dict, out: str | Path) -> None:
    """Write :func:`model_card` as ``out/README.md``."""
    atomic_write_bytes(Path(out) / CARD, model_card(rows, extra, config, out).encode())
