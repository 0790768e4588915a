"""Compare compression runs: one table (Markdown + CSV) and mAP-vs-FLOPs / mAP-vs-latency plots,
one line per method, Pareto front marked.

Example:
    >>> compare_runs(["runs/cdd35", "runs/taylor35"], "runs/report")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path

from ..errors import CapdistError
from ..io.atomic import atomic_write_bytes, atomic_write_json
from ..io.run_dir import read_config
from ..io.schema import check_report


class ReportError(CapdistError):
    """Runs that cannot be compared."""


def _method(report: dict, config: dict) -> str:
    if "method" in report:
        return report["method"]
    if "compress" in config:
        schedule = config["compress"]["schedule"]
        return f"cdd-{schedule['kind'] if isinstance(schedule, dict) else schedule}"
    return config.get("prune", {}).get("method", "unknown")


def _terms(report: dict) -> str:
    """The loss terms a run trained with (CDD's training, or a baseline's fine-tuning), by name."""
    terms = report.get("loss_terms") or {}
    if isinstance(terms.get("finetune"), dict):
        terms = {**{k: v for k, v in terms.items() if k != "finetune"}, **terms["finetune"]}
    return "+".join(sorted(k for k, v in terms.items() if not isinstance(v, dict) and k != "penalty" and v))


def collect(run_dirs: list[str | Path]) -> tuple[list[dict], dict]:
    """The final model of every run, with its method, plus the teacher row."""
    rows, teacher, datasets = [], None, set()
    for run in map(Path, run_dirs):
        path = run / "report.json"
        if not path.is_file():
            raise ReportError(f"{run} has no report.json (run compress or prune there first)")
        try:
            report = check_report(json.loads(path.read_text()), path)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path} is corrupt ({exc.msg} at line {exc.lineno})") from None
        config = read_config(run) if (run / "config.json").is_file() else {}
        datasets.add(report.get("data", config.get("data")))
        final = report["models"][-1]
        rows.append({"run": str(run), "method": _method(report, config), "target": report.get("target_flops"),
                     **{k: final[k] for k in ("flops", "params", "latency_b1_ms", "latency_b32_ms")},
                     "mAP": final["symmetric"]["mAP"], "R@1": final["symmetric"]["R@1"],
                     "mAP_asym": final.get("asymmetric", {}).get("mAP"),
                     "epochs": report.get("epochs", report.get("finetune_epochs")),
                     "terms": _terms(report),
                     "seed": config.get("train", {}).get("seed"),
                     "latency_ratio_b32": final.get("latency_ratio_b32",
                                                    final["latency_b32_ms"] / report["models"][0]["latency_b32_ms"])})
        teacher = teacher or report["models"][0]
    if len(datasets) > 1:
        raise ReportError(f"runs use different datasets ({', '.join(sorted(map(str, datasets)))}); "
                          "compare runs of one dataset at a time")
    return rows, teacher


def pareto(rows: list[dict], cost: str) -> set[int]:
    """Indices of rows no other row beats on both lower ``cost`` and higher mAP."""
    front = set()
    for i, r in enumerate(rows):
        if not any(o[cost] <= r[cost] and o["mAP"] >= r["mAP"] and (o[cost] < r[cost] or o["mAP"] > r["mAP"])
                   for o in rows):
            front.add(i)
    return front


def _plot(rows: list[dict], teacher: dict, cost: str, label: str, path: Path, front: set[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    by_method = defaultdict(list)
    for i, r in enumerate(rows):
        by_method[r["method"]].append((r[cost], 100 * r["mAP"], i))
    for method, pts in sorted(by_method.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    for i in front:
        ax.scatter(rows[i][cost], 100 * rows[i]["mAP"], s=140, facecolors="none", edgecolors="black")
    ax.axhline(100 * teacher["symmetric"]["mAP"], color="gray", linestyle="--", label="teacher")
    ax.set_xlabel(label)
    ax.set_ylabel("mAP (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("circled: Pareto front")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def apply_latency(rows: list[dict], teacher: dict, latency: dict[str, dict]) -> None:
    """Replace the latencies each run recorded by figures re-measured side by side
    (:func:`capdist.benchmarks.retime.retime_runs`), ratios to the teacher included."""
    for key in ("latency_b1_ms", "latency_b32_ms"):
        teacher[key] = latency["teacher"][key]
    teacher["latency_ratio_b32"] = 1.0
    for r in rows:
        timed = latency[str(Path(r["run"]))]
        r.update({k: timed[k] for k in ("latency_b1_ms", "latency_b32_ms")}, latency_ratio_b32=timed["ratio_b32"])


def compare_runs(run_dirs: list[str | Path], out: str | Path, latency: dict[str, dict] | None = None) -> list[dict]:
    """Write ``comparison.md``, ``comparison.csv``, ``comparison.json`` and two plots into ``out``.

    Args:
        run_dirs: run directories of one dataset.
        out: where the table and plots go.
        latency: latencies re-measured side by side (``retime_runs``); without it, each run's
            own figure is used and the latency ratio is taken against the teacher's figure
            recorded in the same run.
    """
    if Path(out).exists() and not Path(out).is_dir():
        raise ReportError(f"--out {out} is a file; give a directory for the table and plots")
    rows, teacher = collect(run_dirs)
    if latency is not None:
        apply_latency(rows, teacher, latency)
    rows.sort(key=lambda r: (r["method"], -r["flops"], r["seed"] or 0))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    front = pareto(rows, "flops")
    base = teacher["flops"]
    how = (f"latencies measured side by side in one process, median of {latency['teacher']['rounds']} "
           f"interleaved rounds, {latency['teacher'].get('device', 'cpu')}, {latency['teacher']['threads']} CPU threads"
           if latency is not None
           else "latencies as each run recorded them (runs timed at different moments)")
    lines = [f"Teacher: {base / 1e9:.4f} GFLOPs, mAP {100 * teacher['symmetric']['mAP']:.2f}, "
             f"R@1 {100 * teacher['symmetric']['R@1']:.2f}, latency b32 {teacher['latency_b32_ms']:.1f} ms; {how}.", "",
             "| method | FLOPs vs teacher | params (M) | latency b1 (ms) | latency b32 (ms) | b32 vs teacher | mAP "
             "| R@1 | mAP (teacher gallery) | epochs | loss terms | Pareto |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    seeded = len({r["seed"] for r in rows}) > 1
    if seeded:
        lines[2] = lines[2].replace("| method |", "| method | seed |")
        lines[3] += "---|"
    for i, r in enumerate(rows):
        asym = f"{100 * r['mAP_asym']:.2f}" if r["mAP_asym"] is not None else "-"
        seed = f" {r['seed']} |" if seeded else ""
        lines.append(f"| {r['method']} |{seed} {r['flops'] / base:.3f} | {r['params'] / 1e6:.3f} | "
                     f"{r['latency_b1_ms']:.2f} | {r['latency_b32_ms']:.1f} | {r['latency_ratio_b32']:.2f} | "
                     f"{100 * r['mAP']:.2f} | "
                     f"{100 * r['R@1']:.2f} | {asym} | {r['epochs']} | {r['terms']} | {'yes' if i in front else ''} |")
    atomic_write_bytes(out / "comparison.md", ("\n".join(lines) + "\n").encode())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out / "comparison.csv", buf.getvalue().encode())
    atomic_write_json(out / "comparison.json", {"teacher": teacher, "runs": rows})
    _plot(rows, teacher, "flops", "FLOPs (fvcore, one image)", out / "map_vs_flops.png", front)
    _plot(rows, teacher, "latency_b32_ms", "CPU latency, batch 32 (ms)", out / "map_vs_latency.png",
          pareto(rows, "latency_b32_ms"))
    return rows
