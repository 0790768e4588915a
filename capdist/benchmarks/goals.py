"""The study's goals judged from its own tables (CDD against baseline pruners), so that
every "met" or "missed" is computed from the committed numbers, never typed by hand.

Goals, per protocol and per CDD schedule:

1. on or above every baseline at every FLOPs level;
2. at 15% of the teacher's FLOPs, symmetric mAP >= the teacher's - 1 point;
3. at 10%, mAP >= the best baseline's + 2 points;
4. at 25%, asymmetric mAP (student queries, teacher gallery) within 1 point of the teacher's
   symmetric mAP;
5. batch-32 latency <= 1.2 x (FLOPs fraction x the teacher's latency), from the side-by-side
   timing of the study.

Example:
    >>> print(goals_markdown("docs/benchmarks/fmnist-standard"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from ..pruners import METHODS


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _near(rows: list[dict], target: float) -> list[dict]:
    return [r for r in rows if r.get("target") is not None and abs(r["target"] - target) < 1e-6]


def judge(comparison: dict) -> list[dict]:
    """Every goal for every CDD schedule in one protocol's ``comparison.json``.

    Returns:
        Rows ``{"goal", "method", "met", "detail"}``; ``met`` is None when the table lacks
        the runs the goal needs.
    """
    teacher, runs = comparison["teacher"], comparison["runs"]
    t_map = teacher["symmetric"]["mAP"]
    cdd = sorted({r["method"] for r in runs if r["method"].startswith("cdd-")})
    base = [r for r in runs if r["method"] in METHODS]
    out = []
    for method in cdd:
        mine = {round(r["target"], 4): r for r in runs if r["method"] == method and r.get("target") is not None}
        behind = []
        for target, r in sorted(mine.items(), reverse=True):
            best = max(_near(base, target), key=lambda b: b["mAP"], default=None)
            if best is not None and r["mAP"] < best["mAP"]:
                behind.append(f"{target:.0%}: {_pct(r['mAP'])} vs {best['method']} {_pct(best['mAP'])}")
        levels = [t for t in mine if _near(base, t)]
        out.append({"goal": "on or above every baseline at every FLOPs level", "method": method,
                    "met": (not behind) if levels else None,
                    "detail": "; ".join(behind) if behind else f"at all {len(levels)} levels"})
        r15 = mine.get(0.15)
        out.append({"goal": "15% FLOPs: mAP >= teacher - 1", "method": method,
                    "met": None if r15 is None else r15["mAP"] >= t_map - 0.01,
                    "detail": "-" if r15 is None else f"{_pct(r15['mAP'])} vs teacher {_pct(t_map)}"})
        r10 = mine.get(0.1)
        best10 = max(_near(base, 0.1), key=lambda b: b["mAP"], default=None)
        out.append({"goal": "10% FLOPs: mAP >= best baseline + 2", "method": method,
                    "met": None if r10 is None or best10 is None else r10["mAP"] >= best10["mAP"] + 0.02,
                    "detail": "-" if r10 is None or best10 is None else
                    f"{_pct(r10['mAP'])} vs {best10['method']} {_pct(best10['mAP'])} "
                    f"({100 * (r10['mAP'] - best10['mAP']):+.2f})"})
        r25 = mine.get(0.25)
        asym = None if r25 is None else r25.get("mAP_asym")
        out.append({"goal": "25% FLOPs: asymmetric mAP within 1 of teacher", "method": method,
                    "met": None if asym is None else asym >= t_map - 0.01,
                    "detail": "-" if asym is None else f"{_pct(asym)} vs teacher {_pct(t_map)}"})
        slow = [f"{r['flops'] / teacher['flops']:.0%}: {r['latency_ratio_b32']:.2f} > "
                f"{1.2 * r['flops'] / teacher['flops']:.2f}" for _, r in sorted(mine.items(), reverse=True)
                if r.get("latency_ratio_b32") is not None
                and r["latency_ratio_b32"] > 1.2 * r["flops"] / teacher["flops"]]
        out.append({"goal": "latency b32 <= 1.2 x FLOPs fraction x teacher's", "method": method,
                    "met": not slow, "detail": "; ".join(slow) if slow else f"at all {len(mine)} levels"})
    return out


def goals_markdown(study_dir: str | Path) -> str:
    """A Markdown table of every goal of every protocol in a study directory."""
    study_dir = Path(study_dir)
    protocols = json.loads((study_dir / "summary.json").read_text())["protocols"]
    lines = ["| protocol | goal | method | met | figures |", "|---|---|---|---|---|"]
    for name in protocols:
        for row in judge(json.loads((study_dir / name / "comparison.json").read_text())):
            met = {True: "met", False: "**missed**", None: "not measured"}[row["met"]]
            lines.append(f"| {name} | {row['goal']} | {row['method']} | {met} | {row['detail']} |")
    return "\n".join(lines) + "\n"
