"""A small committed result that the code must keep re-making: a tiny teacher trained on scikit-learn's
digits and compressed by ``compress`` with every default, on one CPU thread. When the figures drift,
the code changed what it computes; re-make the committed file on purpose (``--write``) and say why.

Usage:
    python -m capdist.benchmarks.reproduce --check   # exit 1 when the figures drift
    python -m capdist.benchmarks.reproduce --write   # re-make docs/benchmarks/reproduce.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from ..io.atomic import atomic_write_json

COMMITTED = Path("docs/benchmarks/reproduce.json")
TOLERANCE = {"teacher_mAP": 0.005, "mAP": 0.005, "mAP_teacher_gallery": 0.005, "flops_fraction": 0.002}


def make_small_result(work: Path) -> dict[str, float]:
    """Train the tiny teacher, compress it to half its FLOPs with every default; the figures."""
    from ..engine import TrainConfig
    from ..methods import CompressConfig, RunOptions, compress, train_retrieval

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = TrainConfig(epochs=3, batch_size=32, lr=0.05, progress=False)
        train_retrieval("tiny_resnet", "digits", train, work / "teacher", train_subset=320, device="cpu",
                        backbone_kwargs={"width": 8})
        config = CompressConfig.of(target_flops=0.5, epochs=2, batch_size=32, progress=False, latency_repeats=1)
        report = compress(str(work / "teacher"), "digits", config, work / "compressed",
                          RunOptions(device="cpu", train_subset=320))
    finally:
        torch.set_num_threads(threads)
    teacher, final = report["models"][0], report["models"][-1]
    return {"teacher_mAP": round(teacher["symmetric"]["mAP"], 6), "mAP": round(final["symmetric"]["mAP"], 6),
            "mAP_teacher_gallery": round(final["asymmetric"]["mAP"], 6),
            "flops_fraction": round(report["flops_fraction"], 6)}


def drift(made: dict[str, float], committed: dict[str, float]) -> list[str]:
    """The figures that moved past their tolerance, as readable lines."""
    return [f"{key}: {committed[key]:.4f} committed, {made[key]:.4f} now" for key, tol in TOLERANCE.items()
            if abs(made[key] - committed[key]) > tol]


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"re-make {COMMITTED}")
    parser.add_argument("--check", action="store_true", help="compare with the committed figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        made = make_small_result(Path(work))
    if args.write:
        atomic_write_json(COMMITTED, {"figures": made, "commit": _commit(),
                                      "command": "python -m capdist.benchmarks.reproduce --write"})
        print(f"wrote {COMMITTED}: {made}")
        return
    moved = drift(made, json.loads(COMMITTED.read_text())["figures"])
    print("\n".join(moved) if moved else f"the committed figures are re-made: {made}")
    sys.exit(1 if moved and args.check else 0)


if __name__ == "__main__":
    main()
