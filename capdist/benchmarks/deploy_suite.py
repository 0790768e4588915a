"""Latency where models are deployed: the same pruned widths timed in PyTorch eager, ONNX Runtime and
OpenVINO (CPU, float32, batch 1), each runtime side by side with the unpruned network.

For each case (ResNet-50 at 224x224 and 256x128, MobileNetV2 at 224x224) and each FLOPs target
(50%, 25%, 10%): CDD's widths (ResRep's global norm ranking after a short penalised run, as
:mod:`capdist.benchmarks.latency_suite` makes them), with any widths and with widths rounded to
multiples of 8, against Torch-Pruning's uniform magnitude pruning with and without ``round_to=8``;
where uniform ``round_to=8`` lands more than 1% under a target, CDD's multiples of 8 at its FLOPs too.
Every model of a case is timed in every runtime in interleaved rounds against the unpruned network
in that runtime; the figure is the median of the per-round ratios. With ``--latency-targets``, CDD's
widths under latency targets of 50% and 25% whose per-layer table and probes were measured in each
runtime named (as ``compress --latency-backend`` builds them). Writes ``deploy.json`` and
``deploy.md`` into ``--out``::

    .venv/bin/python -m capdist.benchmarks.deploy_suite [--out docs/benchmarks/deploy] [--cases 0]
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from pathlib import Path

import torch
import torchvision

from ..compactor import NormSchedule, surgery
from ..errors import UnreachableTarget
from ..io.atomic import atomic_write_bytes, atomic_write_json
from ..measure.latency_budget import build_latency_budget
from ..measure.timer import get_timer
from ..measure.timing import time_side_by_side
from .latency_suite import CASES, TARGETS, flops_of, latency_target_widths, short_run, uniform_models, unmask

RUNTIMES = ("eager", "onnxruntime", "openvino")
METHODS = ("CDD, FLOPs target", "CDD, FLOPs target, widths x8")
MATCHED = "CDD, widths x8, at uniform x8's FLOPs"


def _latency_models(cm, example, teacher, size, runtime: str, threads: int, table_time: float) -> tuple[dict, list]:
    """CDD's widths under latency targets measured in ``runtime``: the per-layer table and the uniform
    probes timed there, the schedule's widths recalibrated at 50%, 90% and 100% of the reduction, as
    ``compress --latency-backend`` does."""
    unmask(cm)
    cm.config.round_to = 1
    table_start = time.time()
    budget = build_latency_budget(cm, teacher, example, size, min_run_time=table_time, choose_round_to=True,
                                  timer=get_timer(runtime, threads=threads))
    table_seconds = round(time.time() - table_start, 1)
    models, rows = {}, []
    method = f"CDD, latency target in {runtime}"
    for target in (0.5, 0.25):
        try:
            latency_target_widths(cm, budget, target, example)
        except UnreachableTarget as exc:
            rows.append({"method": method, "target": target, "skipped": str(exc)})
            continue
        key = f"cdd-latency-{runtime}-{target}"
        models[key] = surgery(cm, example, tolerance=None).model.eval()
        rows.append({"method": method, "target": target, "model": key, "runtime": runtime,
                     "predicted": round(budget.fraction(), 4), "calibration": copy.deepcopy(budget.calibration),
                     "table_seconds": table_seconds})
    return models, rows


def _cdd_models(cm, example) -> tuple[dict, list[dict]]:
    models, rows = {}, []
    for round_to, method in ((1, METHODS[0]), (8, METHODS[1])):
        cm.config.round_to = round_to
        for target in TARGETS:
            unmask(cm)
            key = f"cdd-{round_to}-{target}"
            try:
                NormSchedule(cm, target).update(limit=10**9)
            except UnreachableTarget as exc:
                rows.append({"method": method, "target": target, "skipped": str(exc)})
                continue
            models[key] = surgery(cm, example, tolerance=None).model.eval()
            rows.append({"method": method, "target": target, "model": key})
    return models, rows


def _matched_models(cm, example, uniform: dict, rows: list[dict], size) -> tuple[dict, list[dict]]:
    """CDD's widths (multiples of 8) at the FLOPs each uniform ``round_to=8`` model actually landed on, where
    that is more than 1% under its target: uniform widths move in steps of 8 channels in every layer at
    once, so they can land well below a target, and a comparison at equal FLOPs needs CDD there too."""
    models, matched = {}, []
    cm.config.round_to = 8
    for row in rows:
        if not row["method"].endswith("round_to=8") or "model" not in row:
            continue
        fraction = flops_of(uniform[row["model"]], size) / flops_of(uniform["teacher"], size)
        if fraction >= row["target"] * 0.99:
            continue
        unmask(cm)
        try:
            NormSchedule(cm, fraction).update(limit=10**9)
        except UnreachableTarget as exc:
            matched.append({"method": MATCHED, "target": row["target"], "skipped": str(exc)})
            continue
        key = f"cdd-matched-{row['target']}"
        models[key] = surgery(cm, example, tolerance=None).model.eval()
        matched.append({"method": MATCHED, "target": row["target"], "model": key})
    return models, matched


def run_case(name: str, size: tuple[int, int, int], steps: int, rounds: int, threads: int,
             latency_runtimes: tuple[str, ...] = (), table_time: float = 0.02) -> dict:
    """Every method at every target for one network and input size, timed in every runtime; with
    ``latency_runtimes``, also CDD's widths under latency targets measured in each of them."""
    start = time.time()
    teacher = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    _, cm, example = short_run(name, steps)
    models, rows = {"teacher": teacher}, []
    for made in [_cdd_models(cm, example), uniform_models(teacher, size, "Torch-Pruning uniform")]:
        models.update(made[0])
        rows += made[1]
    made = [_matched_models(cm, example, models, rows, size)] + [
        _latency_models(cm, example, teacher, size, runtime, threads, table_time) for runtime in latency_runtimes]
    for models_made, rows_made in made:
        models.update(models_made)
        rows += rows_made
    base = flops_of(teacher, size)
    teacher_ms, described = {}, {}
    for runtime in RUNTIMES:
        timer = get_timer(runtime, threads=threads)
        described[runtime] = timer.describe(torch.zeros(1, *size))
        timing = time_side_by_side(models, size, (1,), rounds=rounds, repeats=3, reference="teacher", timer=timer)
        teacher_ms[runtime] = round(timing["teacher"]["b1"]["median_ms"], 2)
        for row in rows:
            if "model" in row:
                t = timing[row["model"]]["b1"]
                row[runtime] = {"fraction": round(t["ratio"], 4),
                                "range": [round(t["ratio_min"], 4), round(t["ratio_max"], 4)]}
    for row in rows:
        if "model" in row:
            row["flops_fraction"] = round(flops_of(models[row["model"]], size) / base, 4)
            for runtime in RUNTIMES:
                row[runtime]["over_flops"] = round(row[runtime]["fraction"] / row["flops_fraction"], 3)
    return {"model": name, "input_size": list(size), "teacher_ms": teacher_ms, "runtimes": described,
            "rounds": rounds, "rows": rows, "seconds": round(time.time() - start, 1)}


def markdown(results: list[dict], steps: int, command: str) -> str:
    lines = ["# Latency where it is deployed: PyTorch eager, ONNX Runtime and OpenVINO", "",
             f"Reproduce: `{command}` ({platform.machine()} CPU, batch 1, float32, torch {torch.__version__}). "
             "Each cell: latency fraction of the unpruned network in that runtime (median of per-round ratios "
             "over interleaved rounds) and, after the slash, latency fraction / FLOPs fraction. Widths: CDD's "
             f"global norm ranking after {steps} penalised SGD steps on a randomly initialised network; "
             "Torch-Pruning's uniform magnitude pruning. Latency-target rows: the per-layer table and the "
             "uniform probes measured in the runtime named (in bold: the runtime the target is a fraction of), "
             "the widths recalibrated at 50%, 90% and 100% of the reduction, as `compress --latency-backend` does. "
             "BatchNorms folded in every model.", ""]
    for r in results:
        runtimes = ", ".join(f"{d['runtime']} {d['threads']} threads" for d in r["runtimes"].values())
        lines += [f"## {r['model']} at {r['input_size'][1]}x{r['input_size'][2]}", "",
                  "Unpruned: " + ", ".join(f"{k} {v} ms" for k, v in r["teacher_ms"].items()) + f" ({runtimes}).",
                  "", "| method | target | FLOPs fraction | " + " | ".join(RUNTIMES) + " |",
                  "|---|---|---|" + "---|" * len(RUNTIMES)]
        for row in r["rows"]:
            if "skipped" in row:
                lines.append(f"| {row['method']} | {row['target']:.0%} | unreachable |" + " |" * len(RUNTIMES))
                continue
            cells = [f"{'**' if row.get('runtime') == k else ''}{row[k]['fraction']:.3f}"
                     f"{'**' if row.get('runtime') == k else ''} / {row[k]['over_flops']:.2f}" for k in RUNTIMES]
            predicted = f" (predicted {row['predicted']:.3f})" if "predicted" in row else ""
            lines.append(f"| {row['method']}{predicted} | {row['target']:.0%} | {row['flops_fraction']:.3f} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/benchmarks/deploy")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default="all", help="all, or indices into CASES, e.g. 0,2")
    parser.add_argument("--latency-targets", default="", help="runtimes to build latency budgets in, e.g. "
                        "onnxruntime,openvino (each measures a per-layer table: minutes per runtime)")
    parser.add_argument("--table-time", type=float, default=0.02)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = ".venv/bin/python -m capdist.benchmarks.deploy_suite" + \
        ("" if args.cases == "all" else f" --cases {args.cases}") + \
        (f" --latency-targets {args.latency_targets}" if args.latency_targets else "")
    runtimes = tuple(r for r in args.latency_targets.split(",") if r)
    cases = CASES if args.cases == "all" else [CASES[int(i)] for i in args.cases.split(",")]
    results = []
    for name, size in cases:
        print(f"{name} at {size}", flush=True)
        results.append(run_case(name, size, args.steps, args.rounds, args.threads, runtimes, args.table_time))
        atomic_write_json(out / "deploy.json", {"steps": args.steps, "cases": results})
        atomic_write_bytes(out / "deploy.md", markdown(results, args.steps, command).encode())


if __name__ == "__main__":
    main()
