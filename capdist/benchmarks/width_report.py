"""Where two sets of widths differ in a runtime: CDD's widths (multiples of 8) against Torch-Pruning's
uniform ``round_to=8`` ones at the same FLOPs target, stage by stage, from the per-layer latency table
measured in that runtime (the table the deploy benchmark's latency targets use, read from the cache
when it is there).

For each stage (a top-level block of the network: ``layer1`` ... ``layer4`` of a ResNet, each
``features.N`` of a MobileNet): the FLOPs each model keeps there and the milliseconds the table
predicts for its layers, so a stage where one model keeps more FLOPs for fewer milliseconds, or the
reverse, shows where the runtime rewards or punishes an allocation. Writes ``OUT.md`` and ``OUT.json``::

    .venv/bin/python -m capdist.benchmarks.width_report --case 0 --target 0.1 --runtime onnxruntime \
        --out docs/benchmarks/deploy/widths-resnet50-224-10-onnxruntime
"""

from __future__ import annotations

import argparse
import copy
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torchvision

from ..compactor import NormSchedule, surgery
from ..compactor.cost import fvcore_by_module
from ..io.atomic import atomic_write_bytes, atomic_write_json
from ..measure.latency_table import build_latency_table
from ..measure.timer import get_timer
from ..pruners import prune_to_flops
from .latency_suite import CASES, short_run, unmask


def stage_of(name: str) -> str:
    """The stage a layer belongs to: its first name component, or the first two under ``features``."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "features" and len(parts) > 1 else parts[0]


def by_stage(values: dict[str, float]) -> dict[str, float]:
    """Per-layer figures summed per :func:`stage_of` (stages in first-seen order)."""
    out: dict[str, float] = defaultdict(float)
    for name, v in values.items():
        if name:
            out[stage_of(name)] += v
    return dict(out)


def _leaf_flops(model: torch.nn.Module, size: tuple[int, int, int]) -> dict[str, float]:
    counts = fvcore_by_module(model, (torch.randn(1, *size),))
    leaves = {n for n, m in model.named_modules() if not list(m.children())}
    return {n: float(v) for n, v in counts.items() if n in leaves}


def _stage_ms(table, f_in: np.ndarray, f_out: np.ndarray) -> dict[str, float]:
    """Milliseconds the table predicts per stage at kept fractions ``f_in``, ``f_out`` of its layers."""
    return by_stage(dict(zip(table.names, table.layer_ms(f_in, f_out).tolist(), strict=True)))


def compare(name: str, size: tuple[int, int, int], target: float, runtime: str, threads: int = 2,
            steps: int = 30) -> dict:
    """Stage-by-stage FLOPs and predicted milliseconds of CDD (x8) and uniform (``round_to=8``) widths."""
    torch.set_num_threads(threads)
    teacher = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    _, cm, example = short_run(name, steps)
    unmask(cm)
    cm.config.round_to = 1
    plain = surgery(cm, example, tolerance=None).model.eval()
    table = build_latency_table(plain, size, varies=cm.cost.varying_widths(), timer=get_timer(runtime, threads=threads))
    cm.config.round_to = 8
    NormSchedule(cm, target).update(limit=10**9)
    models = {"CDD x8": surgery(cm, example, tolerance=None).model.eval(),
              "uniform x8": prune_to_flops(copy.deepcopy(teacher), torch.randn(1, *size), "magnitude", target, 8).model}
    base_flops = by_stage(_leaf_flops(teacher, size))
    rows: dict[str, dict] = {s: {"teacher_flops": f} for s, f in base_flops.items()}
    totals = {}
    for label, model in models.items():
        flops = by_stage(_leaf_flops(model, size))
        fractions = table.fractions_of(model)
        ms = _stage_ms(table, *fractions)
        for stage in rows:
            rows[stage][label] = {"flops": flops.get(stage, 0.0) / max(base_flops[stage], 1.0),
                                  "ms": ms.get(stage, 0.0)}
        totals[label] = {"flops": sum(flops.values()) / sum(base_flops.values()),
                         "predicted_ms": table.predict(*fractions)}
    full = _stage_ms(table, np.ones(len(table.names)), np.ones(len(table.names)))
    for stage in rows:
        rows[stage]["teacher_ms"] = full.get(stage, 0.0)
    return {"model": name, "input_size": list(size), "target": target, "runtime": table.key["runtime"],
            "threads": threads, "table_ms": table.full_ms, "stages": rows, "totals": totals}


def markdown(r: dict, command: str) -> str:
    lines = [f"# {r['model']} at {r['input_size'][1]}x{r['input_size'][2]}, {r['target']:.0%} of the FLOPs: "
             f"where the widths differ in {r['runtime']}", "",
             f"Reproduce: `{command}`. Per stage: FLOPs kept (fraction of the unpruned stage's) and the "
             f"milliseconds the per-layer table measured in {r['runtime']} ({r['threads']} threads, batch 1) "
             "predicts for the stage's layers; the unpruned network's layers sum to "
             f"{r['table_ms']:.2f} ms.", "",
             "| stage | unpruned ms | CDD x8 FLOPs | CDD x8 ms | uniform x8 FLOPs | uniform x8 ms |",
             "|---|---|---|---|---|---|"]
    for stage, row in r["stages"].items():
        if row["teacher_ms"] < 1e-2:  # BatchNorm, pooling, the classifier: no layer of the table
            continue
        c, u = row["CDD x8"], row["uniform x8"]
        lines.append(f"| {stage} | {row['teacher_ms']:.2f} | {c['flops']:.3f} | {c['ms']:.2f} | "
                     f"{u['flops']:.3f} | {u['ms']:.2f} |")
    c, u = r["totals"]["CDD x8"], r["totals"]["uniform x8"]
    lines += ["", f"Whole network: CDD x8 {c['flops']:.3f} of the FLOPs, {c['predicted_ms']:.2f} ms predicted; "
              f"uniform x8 {u['flops']:.3f}, {u['predicted_ms']:.2f} ms.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", type=int, default=0, help="index into the latency suite's CASES")
    parser.add_argument("--target", type=float, default=0.1)
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="path without extension")
    args = parser.parse_args()
    name, size = CASES[args.case]
    result = compare(name, size, args.target, args.runtime, args.threads)
    command = (f".venv/bin/python -m capdist.benchmarks.width_report --case {args.case} --target {args.target} "
               f"--runtime {args.runtime} --out {args.out}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), result)
    atomic_write_bytes(out.with_suffix(".md"), markdown(result, command).encode())
    print(markdown(result, command))


if __name__ == "__main__":
    main()
