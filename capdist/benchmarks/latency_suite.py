"""Latency at deployment resolution: does a FLOPs cut become a latency cut?

For ResNet-50 and MobileNetV2 at 224x224 and ResNet-50 at 256x128 this measures, side by side in
one process against the unpruned network, the latency fraction and latency / FLOPs of:

* CDD's widths under a FLOPs target (ResRep's global norm ranking, scope ``all``);
* CDD's widths under a latency target (norm per millisecond saved, from the per-layer latency
  table, calibrated on uniform probes and on its own widths at three points of the reduction, as ``compress`` does);
* Torch-Pruning's uniform magnitude pruning at the FLOPs target, with and without ``round_to=8``.

Shapes decide latency, so the masks come from a short run: compactors attached to a randomly
initialised network, ``--steps`` SGD steps with the group-lasso penalty on Fashion-MNIST images
at 64x64 (so the compactor norms differ), then each schedule's mask update at the target.
Writes ``latency.json`` and ``latency.md`` (with ``latency_vs_flops.png``) into ``--out``::

    .venv/bin/python -m capdist.benchmarks.latency_suite [--out docs/benchmarks/latency-224]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

from ..compactor import CompactorConfig, NormSchedule, attach, surgery
from ..compactor.cost import fvcore_by_module
from ..data import open_dataset
from ..errors import UnreachableTarget
from ..io.atomic import atomic_write_bytes, atomic_write_json
from ..measure.latency_budget import build_latency_budget
from ..measure.report import pyplot, save_figure
from ..measure.timing import time_side_by_side
from ..methods.latency_target import RECALIBRATE_AT
from ..pruners import prune_to_flops

CASES = (("resnet50", (3, 224, 224)), ("mobilenet_v2", (3, 224, 224)), ("resnet50", (3, 256, 128)))
TARGETS = (0.5, 0.25, 0.1)


def short_run(name: str, steps: int, seed: int = 0):
    """A randomly initialised network with compactors after ``steps`` penalised SGD steps on Fashion-MNIST."""
    torch.manual_seed(seed)
    net = torchvision.models.get_model(name, weights=None, num_classes=10)
    data = open_dataset("fmnist", image_size=(64, 64)).train
    example = torch.randn(2, 3, 64, 64)
    cm = attach(net, example, CompactorConfig(scope="all", penalty=4e-3, min_ratio=0.2))
    opt = torch.optim.SGD(cm.param_groups(lr=0.01), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(data), (16,), generator=gen)
        x = torch.stack([data[int(i)][0] for i in idx]).expand(-1, 3, -1, -1)
        y = torch.tensor([int(data.pids[int(i)]) for i in idx])
        loss = F.cross_entropy(net(x), y) + cm.penalty()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        cm.reset_gradients()
        opt.step()
    return net.eval(), cm, example


def unmask(cm) -> None:
    """Every channel of ``cm`` kept again."""
    for g in cm.groups:
        g.set_mask(torch.ones(g.channels, dtype=torch.bool))


def latency_target_widths(cm, budget, target: float, example: torch.Tensor) -> None:
    """``cm``'s masks at a latency ``target`` as ``compress`` reaches them: ResRep's ranking on the budget,
    the widths timed and the budget refitted once the masks have made each share of the reduction in
    :data:`~capdist.methods.latency_target.RECALIBRATE_AT`, then the ranking at the target (the budget's
    scale first reset to its probes').

    Raises:
        UnreachableTarget: the target is below what the minimum widths reach.
    """
    unmask(cm)
    budget.calibration.pop("during_training", None)
    budget.scale = budget.calibration["scale"]
    schedule = NormSchedule(cm, target, budget=budget)
    for share in RECALIBRATE_AT:
        schedule.target = 1.0 - share * (1.0 - target)
        schedule.update(limit=10**9)
        budget.recalibrate(example)
    schedule.target = target
    schedule.update(limit=10**9)


def uniform_models(teacher: torch.nn.Module, size: tuple[int, int, int], label: str) -> tuple[dict, list[dict]]:
    """Torch-Pruning's uniform magnitude pruning of ``teacher`` at every target, with and without
    ``round_to=8``: the models by key, and one row each (``label``, a suffix for the rounding)."""
    models, rows = {}, []
    for round_to in (None, 8):
        method = label + (", round_to=8" if round_to else "")
        for target in TARGETS:
            try:
                res = prune_to_flops(copy.deepcopy(teacher), torch.randn(1, *size), "magnitude", target, round_to)
            except UnreachableTarget as exc:
                rows.append({"method": method, "target": target, "skipped": str(exc)})
                continue
            key = f"tp-{round_to or 1}-{target}"
            models[key] = res.model.eval()
            rows.append({"method": method, "target": target, "model": key})
    return models, rows


def flops_of(model, size) -> int:
    """Multiply-adds of one image through ``model`` (fvcore)."""
    return int(fvcore_by_module(model, (torch.randn(1, *size),))[""])


def run_case(name: str, size: tuple[int, int, int], steps: int, rounds: int, table_time: float) -> dict:
    """Every method at every target for one network and input size, timed side by side."""
    start = time.time()
    net, cm, example = short_run(name, steps)
    teacher = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    models, rows = {"teacher": teacher}, []
    base = flops_of(teacher, size)
    for target in TARGETS:
        try:
            NormSchedule(cm, target).update(limit=10**9)
        except UnreachableTarget as exc:
            rows.append({"method": "CDD, FLOPs target", "target": target, "skipped": str(exc)})
            continue
        models[f"cdd-flops-{target}"] = surgery(cm, example, tolerance=None).model
        rows.append({"method": "CDD, FLOPs target", "target": target, "model": f"cdd-flops-{target}"})
    unmask(cm)
    table_start = time.time()
    budget = build_latency_budget(cm, models["teacher"], example, size, min_run_time=table_time, choose_round_to=True)
    table_seconds = time.time() - table_start
    for target in TARGETS:
        try:
            latency_target_widths(cm, budget, target, example)
        except UnreachableTarget as exc:
            rows.append({"method": "CDD, latency target", "target": target, "skipped": str(exc)})
            continue
        models[f"cdd-latency-{target}"] = surgery(cm, example, tolerance=None).model
        rows.append({"method": "CDD, latency target", "target": target, "model": f"cdd-latency-{target}",
                     "predicted": round(budget.fraction(), 4),
                     "recalibrated": budget.calibration.get("during_training", [])})
    uniform, uniform_rows = uniform_models(teacher, size, "Torch-Pruning uniform magnitude")
    models.update(uniform)
    rows += uniform_rows
    timing = time_side_by_side(models, size, (1,), rounds=rounds, repeats=3, reference="teacher")
    for row in rows:
        if "model" not in row:
            continue
        t = timing[row["model"]]["b1"]
        flops = flops_of(models[row["model"]], size) / base
        row.update({"flops_fraction": round(flops, 4), "latency_fraction": round(t["ratio"], 4),
                    "latency_range": [round(t["ratio_min"], 4), round(t["ratio_max"], 4)],
                    "latency_over_flops": round(t["ratio"] / flops, 3)})
    return {"model": name, "input_size": list(size), "teacher_ms": round(timing["teacher"]["b1"]["median_ms"], 2),
            "threads": timing["teacher"]["threads"], "rounds": rounds, "rows": rows,
            "table_seconds": round(table_seconds, 1), "calibration": budget.calibration,
            "seconds": round(time.time() - start, 1)}


def markdown(results: list[dict], steps: int) -> str:
    lines = ["# Latency at deployment resolution", "",
             f"Reproduce: `.venv/bin/python -m capdist.benchmarks.latency_suite` ({platform.machine()} CPU, "
             f"{results[0]['threads']} threads, batch 1, torch {torch.__version__}). Every model of a case is timed "
             "side by side with the unpruned network in interleaved rounds (median of per-round ratios, range in "
             "brackets); every model has its BatchNorms folded (surgery does it for CDD, torch.fx for the others). "
             "Masks: compactors on a randomly initialised network after "
             f"{steps} penalised SGD steps on Fashion-MNIST at 64x64, then each schedule's update at the target; "
             "the latency-target rows use the per-layer latency table at the deployment size, calibrated on "
             "uniform probes and on their own widths at 50%, 90% and 100% of the reduction, with round_to chosen "
             "by timing as `compress` does.", ""]
    for r in results:
        lines += [f"## {r['model']} at {r['input_size'][1]}x{r['input_size'][2]}", "",
                  f"Unpruned: {r['teacher_ms']} ms; latency table measured in {r['table_seconds']} s.", "",
                  "| method | target | FLOPs fraction | latency fraction | latency / FLOPs | predicted |",
                  "|---|---|---|---|---|---|"]
        for row in r["rows"]:
            if "skipped" in row:
                lines.append(f"| {row['method']} | {row['target']:.0%} | unreachable | | | |")
                continue
            lo, hi = row["latency_range"]
            lines.append(f"| {row['method']} | {row['target']:.0%} | {row['flops_fraction']:.3f} | "
                         f"{row['latency_fraction']:.3f} [{lo:.3f}-{hi:.3f}] | {row['latency_over_flops']:.2f} | "
                         f"{row.get('predicted', '')} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    fig, axes = pyplot().subplots(1, len(results), figsize=(5 * len(results), 4.2), squeeze=False)
    styles = {"CDD, FLOPs target": ("o", "C0"), "CDD, latency target": ("s", "C1"),
              "Torch-Pruning uniform magnitude": ("^", "C2"),
              "Torch-Pruning uniform magnitude, round_to=8": ("v", "C3")}
    for ax, r in zip(axes[0], results, strict=True):
        for method, (marker, colour) in styles.items():  # one colour per method in every panel
            pts = [(row["flops_fraction"], row["latency_fraction"]) for row in r["rows"]
                   if row["method"] == method and "model" in row]
            if pts:
                ax.scatter(*zip(*pts, strict=True), marker=marker, color=colour, label=method)
        ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls="--", label="latency = FLOPs")
        ax.plot([0, 1], [0, 1.2], color="gray", lw=0.8, ls=":", label="latency = 1.2 x FLOPs")
        ax.set_title(f"{r['model']} {r['input_size'][1]}x{r['input_size'][2]} (CPU, batch 1)", fontsize=9)
        ax.set_xlabel("FLOPs fraction (fvcore)")
        ax.set_ylabel("latency fraction (side by side)")
        top = max([row["latency_fraction"] for row in r["rows"] if "model" in row] + [0.8])
        ax.set_xlim(0, 0.65)
        ax.set_ylim(0, min(1.3, top + 0.08))
        ax.grid(alpha=0.3)
    labelled = {}
    for ax in axes[0]:  # every method once, whichever panels it appears in
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labelled.setdefault(label, handle)
    axes[0][-1].legend(labelled.values(), labelled.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/benchmarks/latency-224")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--table-time", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default="all", help="all, or indices into CASES, e.g. 0,2")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = CASES if args.cases == "all" else [CASES[int(i)] for i in args.cases.split(",")]
    results = []
    for name, size in cases:
        print(f"{name} at {size}", flush=True)
        results.append(run_case(name, size, args.steps, args.rounds, args.table_time))
        atomic_write_json(out / "latency.json", {"steps": args.steps, "cases": results})
        atomic_write_bytes(out / "latency.md", markdown(results, args.steps).encode())
        plot(results, out / "latency_vs_flops.png")
        print(json.dumps(results[-1]["rows"], indent=None)[:2000], flush=True)


if __name__ == "__main__":
    main()
