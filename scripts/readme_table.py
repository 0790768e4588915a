"""Regenerate a benchmark table between the markers of a Markdown file from a committed study
(docs/benchmarks/<name>/summary.json).

Usage: .venv/bin/python scripts/readme_table.py docs/benchmarks/fmnist-standard [docs/benchmarks/history.md]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

BEGIN, END = "<!-- benchmark-table:begin -->", "<!-- benchmark-table:end -->"


def table(study: Path, images: Path) -> str:
    """The tables of ``study``, images linked from ``images`` (the folder of the file they go into)."""
    summary = json.loads((study / "summary.json").read_text())
    lines = [f"From `{study}/summary.json` (profile `{summary['profile']}`; {summary['budget']}; "
             f"{summary.get('seconds', 0) / 60:.0f} minutes on this machine). Latencies: every model and the "
             "teacher timed side by side in one process after training, median of interleaved rounds.", ""]
    for protocol, rows in summary["protocols"].items():
        teacher = json.loads((study / protocol / "comparison.json").read_text())["teacher"]
        base = teacher["flops"]
        lines += [f"**{protocol}** - teacher mAP {100 * teacher['symmetric']['mAP']:.2f}, "
                  f"R@1 {100 * teacher['symmetric']['R@1']:.2f}, latency b32 {teacher['latency_b32_ms']:.1f} ms", "",
                  "| method | FLOPs vs teacher | mAP | R@1 | mAP (teacher gallery) | latency b32 vs teacher |",
                  "|---|---|---|---|---|---|"]
        for r in sorted(rows, key=lambda r: (-round(r["target"] or 1.0, 2), r["method"])):
            asym = f"{100 * r['mAP_asym']:.2f}" if r.get("mAP_asym") is not None else "-"
            lines.append(f"| {r['method']} | {r['flops'] / base:.3f} | {100 * r['mAP']:.2f} | {100 * r['R@1']:.2f} "
                         f"| {asym} | {r['latency_ratio_b32']:.2f} |")
        lines += ["", f"![mAP vs FLOPs]({os.path.relpath(study / protocol, images)}/map_vs_flops.png)", ""]
    goals = study / "goals.md"
    if goals.is_file():
        lines += [f"Goals, judged by `capdist.benchmarks.goals` from these tables (`{goals}`):", "",
                  *goals.read_text().splitlines()[2:]]
    return "\n".join(lines)


def main() -> None:
    study = Path(sys.argv[1])
    readme = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/benchmarks/history.md")
    text = readme.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + table(study, readme.parent) + "\n" + text[end:])


if __name__ == "__main__":
    main()
