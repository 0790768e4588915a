"""The benchmark study: CDD against baseline pruners at equal FLOPs and equal training
budget, on Fashion-MNIST's closed-set and open-set retrieval protocols.

Every method gets the same total epochs after the teacher (CDD: epochs with compactors;
baselines: fine-tuning epochs after pruning), the same learning rate as applied, and CE + triplet
+ KD; CDD also gets its block feature loss, which the baselines here do not, and the comparison
table's "loss terms" column says what each run trained with (``scripts/seed_study5.sh`` gives the
baselines the same block loss through ``cdd_block``). The
unpruned teacher trained for the same epochs, with and without KD, shows what the extra
epochs alone give.
Runs are written one by one, and the comparison is regenerated after each, so an
interrupted study still leaves its finished part on disk.

Example:
    >>> run_study("fmnist", "quick", "docs/benchmarks/fmnist-quick")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..engine.trainer import TrainConfig
from ..errors import CapdistError
from ..io.atomic import atomic_write_bytes, atomic_write_json
from ..methods import CompressConfig, PruneConfig, RunOptions, compress, prune, train_retrieval
from .compare import compare_runs
from .goals import goals_markdown
from .retime import retime_runs


@dataclass(frozen=True)
class Profile:
    """Sizes of one study profile."""

    model: str
    train_subset: int | None
    test_subset: int | None
    teacher_epochs: int
    epochs: int
    targets: tuple[float, ...]
    methods: tuple[str, ...]
    protocols: tuple[str, ...]
    latency_rounds: int


METHODS = ("cdd-retrieval", "cdd-norm", "magnitude", "taylor")
PROFILES = {
    "quick": Profile("resnet18", 2000, 1000, 2, 2, (0.35, 0.15), METHODS, ("fmnist",), 3),
    "standard": Profile("resnet18", 3000, 2000, 6, 3, (0.5, 0.35, 0.25, 0.15, 0.10), METHODS,
                        ("fmnist", "fmnist-open"), 7),
    "digits": Profile("resnet18", None, None, 2, 1, (0.35,), METHODS, ("digits",), 1),
}


def _one_run(method: str, teacher: Path, data: str, target: float, p: Profile, out: Path, device: str) -> None:
    train = TrainConfig(epochs=p.epochs, batch_size=64, lr=0.01, warmup_epochs=0.5, progress=False)
    run = RunOptions(device=device, overwrite=True, train_subset=p.train_subset, test_subset=p.test_subset)
    if method in ("unpruned", "unpruned-kd"):
        train.lr = 0.1
        cfg = PruneConfig.of(method="none", finetune_epochs=p.epochs, kd=method.endswith("kd"), latency_repeats=5,
                             train=train)
        prune(str(teacher), data, cfg, out, run)
    elif method.startswith("cdd-"):
        cfg = CompressConfig.of(target_flops=target, schedule=method[4:], scope="all", mask_warmup=0.5,
                                mask_until=0.4, latency_repeats=5, train=train)
        compress(str(teacher), data, cfg, out, run)
    else:
        train.lr = 0.1  # fine-tuning runs at a tenth of it, as after CDD's surgery
        cfg = PruneConfig.of(method=method, target_flops=target, finetune_epochs=p.epochs, latency_repeats=5,
                             train=train)
        prune(str(teacher), data, cfg, out, run)


def _earlier(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_study(dataset: str, profile: str, out: str | Path, runs_root: str | Path = "runs/bench",
              device: str = "cpu", echo: Callable[[str], None] = print) -> dict:
    """Train (or reuse) the teachers, run every method at every target, time every model side by
    side, and write the comparison, ``summary.json`` and ``goals.md``. A study resumed over finished
    runs reuses them; its ``seconds`` then add to the earlier invocations' (``invocations`` counts them).
    """
    if profile not in PROFILES:
        raise CapdistError(f"unknown profile '{profile}' (quick, standard, digits)")
    p = PROFILES[profile]
    protocols = p.protocols if dataset == "fmnist" else (dataset,)
    out, root = Path(out), Path(runs_root) / profile
    summary: dict = {"profile": profile, "budget": f"{p.epochs} epochs per method after the teacher "
                     f"(teacher training excluded); train subset {p.train_subset}, test subset {p.test_subset}",
                     "protocols": {}}
    start, cached, prev = time.time(), 0, _earlier(out / "summary.json")
    for data in protocols:
        teacher = root / f"teacher-{data}"
        if not (teacher / "model.safetensors").is_file():
            echo(f"[{data}] training the {p.model} teacher ({p.teacher_epochs} epochs)")
            train_retrieval(p.model, data, TrainConfig(epochs=p.teacher_epochs, batch_size=64, lr=0.05,
                                                       progress=False), teacher, train_subset=p.train_subset,
                            overwrite=True)
        runs = []
        jobs = [(1.0, m) for m in ("unpruned", "unpruned-kd")] + [(t, m) for t in p.targets for m in p.methods]
        for target, method in jobs:
            run = root / data / f"{method}-{round(target * 100)}"
            if (run / "report.json").is_file():
                cached += 1
            else:
                echo(f"[{data}] {method} at {target:.0%} FLOPs ({time.time() - start:.0f} s so far)")
                try:
                    _one_run(method, teacher, data, target, p, run, device)
                except CapdistError as exc:
                    echo(f"[{data}] {method} at {target:.0%}: skipped ({exc})")
                    continue
            runs.append(run)
            summary["protocols"][data] = compare_runs(runs, out / data)
            atomic_write_json(out / "summary.json", summary)
        if runs:
            echo(f"[{data}] timing {len(runs)} models and the teacher side by side ({p.latency_rounds} rounds)")
            latency = retime_runs(runs, teacher, rounds=p.latency_rounds, device=device)
            atomic_write_json(out / data / "latency.json", latency)
            summary["protocols"][data] = compare_runs(runs, out / data, latency=latency)
            atomic_write_json(out / "summary.json", summary)
    resumed = cached and prev.get("profile") == profile
    summary["seconds"] = round((float(prev.get("seconds", 0.0)) if resumed else 0.0) + time.time() - start, 1)
    summary["invocations"] = 1 + (int(prev.get("invocations", 1)) if resumed else 0)
    atomic_write_json(out / "summary.json", summary)
    if summary["protocols"]:
        atomic_write_bytes(out / "goals.md", (f"# Goals of `{out.name}`, judged from its tables\n\n"
                                              + goals_markdown(out)).encode())
    return summary

