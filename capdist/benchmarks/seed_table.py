"""Seed-averaged comparison: mean and standard deviation over seeds per protocol, target and method
(a difference counts only outside the seed-to-seed spread).

Reads ``ROOT/<protocol>-<target>/<method>-seed<N>/report.json`` as ``scripts/seed_study.sh`` writes
them, and writes ``seeds.md``, ``seeds.json`` and ``seeds.png`` (mAP with one-standard-deviation
error bars) into ``OUT``::

    .venv/bin/python -m capdist.benchmarks.seed_table runs/bench/seeds docs/benchmarks/seeds-fmnist

``--merge EARLIER/seeds.json`` adds the rows of an earlier table that ROOT does not hold (same teachers).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from ..errors import CapdistError
from ..io.atomic import atomic_write_bytes, atomic_write_json
from ..measure.report import pyplot, save_figure

BASELINES = ("magnitude", "taylor")
SEEDED = re.compile(r"^(?P<method>.+)-seed(?P<seed>\d+)$")
CELL = re.compile(r"^(?P<protocol>.+)-(?P<target>\d+)$")
BUDGET = re.compile(r"e\d+")  # a row's epoch budget, as in ``taylor-e9``


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def collect(root: str | Path) -> dict:
    """``{cell: {"teacher": mAP, "methods": {method: {"mAP": stats, "mAP_asym": stats, "flops": mean}}}}``."""
    cells: dict = {}
    for report in sorted(Path(root).glob("*/*-seed*/report.json")):
        cell, run = report.parent.parent.name, report.parent.name
        m, c = SEEDED.match(run), CELL.match(cell)
        if not m or not c:
            continue
        data = json.loads(report.read_text())
        first, final = data["models"][0], data["models"][-1]
        entry = cells.setdefault(cell, {"protocol": c["protocol"], "target": int(c["target"]) / 100,
                                        "teacher": 100 * first["symmetric"]["mAP"], "runs": {}})
        runs = entry["runs"].setdefault(m["method"], [])
        runs.append({"seed": int(m["seed"]), "mAP": 100 * final["symmetric"]["mAP"],
                     "mAP_asym": 100 * final["asymmetric"]["mAP"] if final.get("asymmetric") else None,
                     "flops": final["flops"] / first["flops"]})
    for entry in cells.values():
        entry["methods"] = {}
        for method, runs in sorted(entry.pop("runs").items()):
            asym = [r["mAP_asym"] for r in runs if r["mAP_asym"] is not None]
            entry["methods"][method] = {"mAP": _stats([r["mAP"] for r in runs]),
                                        "mAP_asym": _stats(asym) if asym else None,
                                        "by_seed": {"mAP": {r["seed"]: r["mAP"] for r in runs},
                                                    "mAP_asym": {r["seed"]: r["mAP_asym"] for r in runs
                                                                 if r["mAP_asym"] is not None}},
                                        "flops": statistics.fmean(r["flops"] for r in runs),
                                        "seeds": sorted(r["seed"] for r in runs)}
    return cells


def merged(cells: dict, earlier: dict) -> dict:
    """``cells`` with every method of ``earlier`` (a ``seeds.json`` this module wrote) that ``cells`` lacks,
    cell by cell: rows made at an earlier commit join rows made now in one table. A cell's teacher must
    agree (the same teacher re-trained), else the earlier rows would be judged against other runs.

    Raises:
        CapdistError: a cell's teacher mAP differs between the two.
    """
    out = {name: {**entry, "methods": dict(entry["methods"])} for name, entry in cells.items()}
    for name, old in earlier.items():
        entry = out.setdefault(name, {k: v for k, v in old.items() if k != "methods"} | {"methods": {}})
        if abs(entry["teacher"] - old["teacher"]) > 1e-6:
            raise CapdistError(f"cell {name}: teacher mAP {entry['teacher']:.4f} now, {old['teacher']:.4f} in the "
                               "earlier table; the rows do not share a teacher")
        for method, stats in old["methods"].items():
            if method not in entry["methods"]:
                by_seed = {k: {int(s): v for s, v in d.items()} for k, d in stats["by_seed"].items()}
                entry["methods"][method] = {**stats, "by_seed": by_seed}
        entry["methods"] = dict(sorted(entry["methods"].items()))
    return out


def is_baseline(method: str) -> bool:
    """``magnitude``, ``taylor`` and their variants (``magnitude-nce``, ``taylor-gallery-teacher``)."""
    return method.split("-")[0] in BASELINES


def baselines_for(entry: dict, method: str) -> list[str]:
    """The baselines ``method`` is judged against: those run with the same variant suffix (the
    longest one, e.g. ``cdd-norm-gallery-teacher-nce`` against ``magnitude-gallery-teacher-nce``),
    else those at the same training budget (``cdd-x-e9-nofeat`` against ``taylor-e9``), else the plain ones."""
    parts = method.split("-")
    for k in range(1, len(parts)):
        suffix = "-".join(parts[k:])
        matched = [f"{b}-{suffix}" for b in BASELINES if f"{b}-{suffix}" in entry["methods"]]
        if matched:
            return matched
    budget = [p for p in parts[1:] if BUDGET.fullmatch(p)]
    if budget:
        return [f"{b}-{budget[-1]}" for b in BASELINES if f"{b}-{budget[-1]}" in entry["methods"]]
    return [b for b in BASELINES if b in entry["methods"]]


def p_values(mine: dict[int, float], theirs: dict[int, float]) -> tuple[float, float]:
    """Welch's two-sided p-value of two sets of per-seed figures, and the paired-by-seed one (over the
    seeds both have); NaN where a test is undefined (fewer than two values, no variance)."""
    try:
        from scipy import stats
    except ImportError:
        raise CapdistError("the seed table's p-values need scipy: pip install 'capdist[study]'") from None

    a, b = list(mine.values()), list(theirs.values())
    welch = float(stats.ttest_ind(a, b, equal_var=False).pvalue) if min(len(a), len(b)) > 1 else float("nan")
    common = sorted(set(mine) & set(theirs))
    paired = float(stats.ttest_rel([mine[s] for s in common], [theirs[s] for s in common]).pvalue) \
        if len(common) > 1 else float("nan")
    return welch, paired


def verdict(entry: dict, method: str) -> str:
    """How ``method`` compares with the best of its baselines (asymmetric mAP for a ``gallery-teacher``
    method, whose queries meet the teacher's gallery): better or worse only when Welch's p < 0.05,
    with the paired-by-seed p beside it."""
    if method not in entry["methods"] or is_baseline(method):
        return ""
    key = "mAP_asym" if "gallery-teacher" in method and entry["methods"][method]["mAP_asym"] else "mAP"
    base = [(entry["methods"][b][key], b) for b in baselines_for(entry, method) if entry["methods"][b][key]]
    if not base:
        return ""
    best, name = max(base, key=lambda t: t[0]["mean"])
    mine = entry["methods"][method][key]
    gap = mine["mean"] - best["mean"]
    what = " (teacher gallery)" if key == "mAP_asym" else ""
    if min(mine["n"], best["n"]) < 2:
        return f"{gap:+.2f} vs {name}{what} (one seed: no test yet)"
    welch, paired = p_values(entry["methods"][method]["by_seed"][key], entry["methods"][name]["by_seed"][key])
    judged = "better" if gap > 0 else "worse"
    return (f"{gap:+.2f} vs {name}{what} (Welch p={welch:.3g}, paired p={paired:.3g}): "
            f"{judged if welch < 0.05 else 'not significant'}")


def markdown(cells: dict) -> str:
    lines = ["# Seed-averaged study (Fashion-MNIST, ResNet-18)", "",
             "Reproduce: `scripts/seed_study.sh`, then `.venv/bin/python -m capdist.benchmarks.seed_table "
             "runs/bench/seeds docs/benchmarks/seeds-fmnist` (or the script and folders the study names). Mean ± "
             "standard deviation over the seeds listed; 'better' means Welch's two-sided p < 0.05 against the best "
             "of the method's baselines (the paired-by-seed p beside it); "
             "each seed also draws the 3,000 training images. 'teacher gallery' is asymmetric mAP (compressed "
             "queries against the teacher's gallery).", ""]
    for entry in sorted(cells.values(), key=lambda e: (e["target"], e["protocol"])):
        lines += [f"## {entry['protocol']}, {entry['target']:.0%} of the FLOPs", "",
                  f"Teacher mAP {entry['teacher']:.2f}.", "",
                  "| method | seeds | FLOPs | mAP | mAP (teacher gallery) | vs the best of its baselines |",
                  "|---|---|---|---|---|---|"]
        for method, m in entry["methods"].items():
            asym = f"{m['mAP_asym']['mean']:.2f} ± {m['mAP_asym']['std']:.2f}" if m["mAP_asym"] else "-"
            lines.append(f"| {method} | {','.join(map(str, m['seeds']))} | {m['flops']:.3f} | "
                         f"{m['mAP']['mean']:.2f} ± {m['mAP']['std']:.2f} | {asym} | {verdict(entry, method)} |")
        lines.append("")
    return "\n".join(lines)


def plot(cells: dict, path: Path) -> None:
    ordered = sorted(cells.values(), key=lambda e: (e["target"], e["protocol"]))
    fig, axes = pyplot().subplots(1, len(ordered), figsize=(4.2 * len(ordered), 4.2), squeeze=False)
    for ax, entry in zip(axes[0], ordered, strict=True):
        names = list(entry["methods"])
        means = [entry["methods"][n]["mAP"]["mean"] for n in names]
        stds = [entry["methods"][n]["mAP"]["std"] for n in names]
        for kind, color in (("baseline", "#fd8d3c"), ("CDD", "#3182bd")):
            idx = [i for i, n in enumerate(names) if is_baseline(n) == (kind == "baseline")]
            ax.errorbar(idx, [means[i] for i in idx], yerr=[stds[i] for i in idx], fmt="o", capsize=4, color=color,
                        label=kind)
            for i in idx:
                values = entry["methods"][names[i]]["mAP"]["values"]
                ax.scatter([i] * len(values), values, s=8, color=color, alpha=0.4)
        ax.axhline(entry["teacher"], color="gray", ls="--", lw=1, label="teacher")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=7)
        top = max(entry["teacher"], max(m + d for m, d in zip(means, stds, strict=True)))
        ax.set_ylim(min(means) - 3 * max(max(stds), 1), top + 1)
        seeds = max(entry["methods"][n]["mAP"]["n"] for n in names)
        ax.set_title(f"{entry['protocol']}, {entry['target']:.0%} FLOPs ({seeds} seeds)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("mAP (%): mean ± std over seeds, each seed a small dot")
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("out")
    parser.add_argument("--merge", help="an earlier seeds.json whose methods join those found under ROOT")
    args = parser.parse_args()
    cells = collect(args.root)
    if args.merge:
        cells = merged(cells, json.loads(Path(args.merge).read_text()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "seeds.json", cells)
    atomic_write_bytes(out / "seeds.md", markdown(cells).encode())
    if cells:
        plot(cells, out / "seeds.png")
    print(markdown(cells))


if __name__ == "__main__":
    main()
