"""Reports: cost and accuracy of every model of a run, as JSON, Markdown and an
accuracy-vs-FLOPs plot.

Example:
    >>> write_report("runs/cdd35", rows, {"method": "cdd"}, "capdist compress")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..io.atomic import atomic_write_bytes, atomic_write_json
from ..io.export import EmbeddingOnly
from .counting import count


def _device_of(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def cost_row(model: nn.Module, image_shape: tuple[int, ...]) -> dict:
    """fvcore FLOPs, thop MACs and params of the embedding path, counted where the model is."""
    net = EmbeddingOnly(model).eval()
    c = count(net, torch.randn(1, *image_shape, device=_device_of(model)))
    return {"flops": c.fvcore_flops, "thop_macs": c.thop_macs, "params": c.params}


def _latency(r: dict, b: int) -> str:
    ratio = r.get(f"latency_ratio_b{b}")
    digits = 2 if b == 1 else 1
    text = f"{r[f'latency_b{b}_ms']:.{digits}f}"
    return f"{text} ({ratio:.2f}x)" if ratio is not None else text


def _folding(rows: list[dict]) -> str:
    """How the models were timed with respect to their BatchNorms."""
    flags = [r.get("latency_bn_folded") for r in rows]
    if all(f is True for f in flags):
        return "; BatchNorms folded into their convolutions, as deployed"
    unfolded = [r["name"] for r, f in zip(rows, flags, strict=True) if f is False]
    return f"; BatchNorms folded where torch.fx could trace the model (not: {', '.join(unfolded)})" if unfolded else ""


def markdown_table(rows: list[dict], asymmetric_first: bool = False) -> str:
    """One line per model: cost, latency (and its ratio to the teacher's, timed side by side),
    symmetric and asymmetric retrieval (asymmetric first when the teacher's gallery stays)."""
    accuracy = ["mAP", "R@1", "mAP (teacher gallery)", "R@1 (teacher gallery)"]
    if asymmetric_first:
        accuracy = accuracy[2:] + accuracy[:2]
    head = ("| model | GFLOPs | FLOPs vs teacher | params (M) | latency b1 ms (vs teacher) "
            "| latency b32 ms (vs teacher) | " + " | ".join(accuracy) + " |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    base = rows[0]["flops"] if rows else 1

    def pct(v):
        return f"{100 * v:.2f}" if isinstance(v, float) else "-"

    for r in rows:
        sym, asym = r.get("symmetric", {}), r.get("asymmetric", {})
        cells = [pct(sym.get("mAP")), pct(sym.get("R@1")), pct(asym.get("mAP")), pct(asym.get("R@1"))]
        if asymmetric_first:
            cells = cells[2:] + cells[:2]
        lines.append(f"| {r['name']} | {r['flops'] / 1e9:.4f} | {r['flops'] / base:.3f} | {r['params'] / 1e6:.3f} | "
                     f"{_latency(r, 1)} | {_latency(r, 32)} | " + " | ".join(cells) + " |")
    if rows and "latency_device" in rows[0]:
        r = rows[0]
        lines += ["", f"Latency: median of {r.get('latency_rounds', '?')} interleaved rounds, every model timed side "
                      f"by side with the teacher in {r.get('latency_runtime', 'eager')} on {r['latency_device']} "
                      f"({r['latency_threads']} threads, {r.get('latency_precision', 'float32')}) at "
                      f"{'x'.join(map(str, r.get('latency_input_size', [])))}; ratios taken round by round"
                      + _folding(rows) + "."]
    return "\n".join(lines)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> None:
    """Write ``fig`` as a PNG with nothing cut at the edges, atomically, and close it."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight", pad_inches=0.15)
    pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_accuracy_vs_flops(rows: list[dict], path: str | Path, title: str) -> None:
    """mAP (symmetric, and asymmetric where present) against FLOPs, one point per model; the title
    wraps and the axes leave room for the labels, so nothing is cut."""
    import textwrap

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        x = r["flops"] / 1e9
        ax.scatter(x, 100 * r["symmetric"]["mAP"], marker="o")
        ax.annotate(textwrap.fill(r["name"], 28), (x, 100 * r["symmetric"]["mAP"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
        if r.get("asymmetric"):
            ax.scatter(x, 100 * r["asymmetric"]["mAP"], marker="x", color="gray")
    ax.margins(x=0.35, y=0.12)
    ax.set_xlabel("GFLOPs (fvcore, one image)")
    ax.set_ylabel("mAP (%)  o: own gallery, x: teacher gallery")
    ax.set_title(textwrap.fill(title, 70), fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_mask_history(attribution: dict, target: float, path: str | Path) -> None:
    """FLOPs over training under the retrieval schedule, with the reduction split into what
    retrieval guidance masked and what the norm top-up masked."""
    history = attribution.get("history") or []
    cost = "latency" if attribution.get("cost") == "latency" else "FLOPs"
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if history:
        steps = [h["step"] for h in history]
        retrieval = [100 * h["retrieval"] for h in history]
        norm = [100 * h["norm"] for h in history]
        left = [100 - a - b for a, b in zip(retrieval, norm, strict=True)]
        ax.stackplot(steps, left, retrieval, norm, labels=[f"{cost} kept", "removed by retrieval guidance",
                                                           "removed by norm top-up"],
                     colors=["#9ecae1", "#31a354", "#fd8d3c"], alpha=0.85)
        ax.plot(steps, [100 * h.get("cost", h["flops"]) for h in history], color="black", lw=1,
                label=f"{cost} after the update")
        if cost != "FLOPs":
            ax.plot(steps, [100 * h["flops"] for h in history], color="gray", lw=1, ls=":",
                    label="FLOPs after the update")
    ax.axhline(100 * target, color="red", ls="--", lw=1, label=f"target {target:.0%}")
    share = attribution.get("share_of_target", {})
    ax.set_title(f"mask updates ({attribution.get('neighbours')}-ranked neighbours, k={attribution.get('k')}): "
                 f"retrieval reached {100 * share.get('retrieval', 0):.0f}% of the target's reduction, "
                 f"norm top-up {100 * share.get('norm', 0):.0f}%", fontsize=8)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"% of the teacher's {cost}")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    save_figure(fig, path)


MOSTLY_NORM = (". The norm top-up did most of it: the retrieval schedule is compress's default for its score "
               "against Taylor pruning + KD on validation splits (docs/benchmarks/val-sweep), not for this share")


def write_report(out: str | Path, rows: list[dict], extra: dict, title: str) -> None:
    """``report.json``, ``report.md`` and ``accuracy_vs_flops.png`` in ``out``."""
    out = Path(out)
    atomic_write_json(out / "report.json", {"models": rows, **extra})
    lines = [f"# {title}", "", markdown_table(rows, asymmetric_first=extra.get("gallery") == "teacher"), ""]
    for key, value in extra.items():
        if key == "rggr":
            removed, share, units = value["flops_removed"], value["share_of_target"], value["units"]
            cost = "latency" if value.get("cost") == "latency" else "FLOPs"
            lines.append(f"- rggr ({value['neighbours']}-ranked neighbours, k={value['k']}): retrieval guidance "
                         f"masked {units['retrieval']['total']} units and removed {removed['retrieval']:.1%} of the "
                         f"FLOPs ({share['retrieval']:.0%} of the target's {cost} reduction); the norm top-up masked "
                         f"{units['norm']['total']} units, {removed['norm']:.1%} ({share['norm']:.0%}); per group in "
                         "report.json, over training in mask_schedule.png" + (MOSTLY_NORM if share["norm"] > share[
                             "retrieval"] else ""))
        elif key == "latency_budget":
            lines.append(f"- latency target {value['target']:.0%} of the teacher's latency at batch {value['batch']}, "
                         f"{'x'.join(map(str, value['input_size']))} on {value['device']} in "
                         f"{value.get('runtime', 'eager')}: predicted {value['predicted']:.1%}, measured side by side "
                         f"{value['measured']:.1%} ("
                         f"{'within' if value['within_5_percent'] else 'not within'} 5% of the request)")
        elif value is not None:
            lines.append(f"- {key}: {value}")
    atomic_write_bytes(out / "report.md", ("\n".join(lines) + "\n").encode())
    plot_accuracy_vs_flops(rows, out / "accuracy_vs_flops.png", title)
