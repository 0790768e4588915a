"""The demo: train a small retrieval teacher on Fashion-MNIST (cached), compress it to 35% of its
FLOPs with CDD, and show the report.

Example:
    >>> run_demo(quick=True)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .data.arrays import FMNIST_HINT, FMNIST_ROOT
from .engine import TrainConfig
from .methods import CompressConfig, RunOptions, compress, train_retrieval

PROFILES = {
    # train images, teacher epochs, compress epochs, test queries, expected minutes on 2 cores
    "quick": (2000, 2, 2, 1000, 1),
    "full": (10000, 6, 4, 10000, 6),
}


def run_demo(quick: bool = False, root: str | Path = "runs/demo", target: float = 0.35,
             echo: Callable[[str], None] = print) -> Path:
    """Run the demo and return the compressed run directory."""
    profile = "quick" if quick else "full"
    subset, t_epochs, c_epochs, test, minutes = PROFILES[profile]
    if os.path.isdir(FMNIST_ROOT):
        data, model = "fmnist", "resnet18"
    else:
        echo(f"Fashion-MNIST not found: {FMNIST_HINT}. Falling back to scikit-learn's digits.")
        data, model, subset, test = "digits", "tiny_resnet", None, None
    root = Path(root)
    teacher = root / f"teacher-{data}-{model}-{subset or 'all'}x{t_epochs}"
    echo(f"capdist demo ({profile}): {model} teacher on {data}"
         f"{f' ({subset} training images)' if subset else ''}, compressed to {target:.0%} of its FLOPs; "
         f"expect about {minutes} min on 2 CPU cores")
    if not (teacher / "model.safetensors").is_file():
        echo(f"training the teacher ({t_epochs} epochs, cached in {teacher}) ...")
        train_retrieval(model, data, TrainConfig(epochs=t_epochs, batch_size=64, lr=0.05), teacher,
                        train_subset=subset, overwrite=True)
    else:
        echo(f"using the cached teacher in {teacher}")
    out = root / f"cdd{round(target * 100)}-{data}-{profile}"
    echo(f"compressing ({c_epochs} epochs, retrieval-guided schedule, scope all) ...")
    cfg = CompressConfig.of(target_flops=target, latency_repeats=5, epochs=c_epochs)
    compress(str(teacher), data, cfg, out, RunOptions(train_subset=subset, overwrite=True, test_subset=test))
    echo((out / "report.md").read_text())
    echo(f"plot: {out / 'accuracy_vs_flops.png'}")
    return out
