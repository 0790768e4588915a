"""Latency of many compressed models measured side by side in one process (CDD, CVPR 2023 reports
latency next to FLOPs; here every figure comes from the same run, so the ratios are comparable).

Each run records its latency while it finishes, under whatever else shared the CPU at
that moment. :func:`retime_runs` loads every model (and the teacher) once, then times
them in interleaved rounds, each model's position shuffled per round, and keeps the
median over rounds; the ratio to the teacher is taken round by round, so a load
spike that slows one round slows the teacher with it.

Example:
    >>> lat = retime_runs(["runs/cdd35"], "runs/teacher")  # doctest: +SKIP
    >>> lat["runs/cdd35"]["ratio_b32"]  # doctest: +SKIP
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import torch

from ..errors import CapdistError
from ..io.run_dir import load_retrieval as load
from ..io.run_dir import read_config
from .latency import measure_latency


def retime_runs(run_dirs: list[str | Path], teacher_dir: str | Path, rounds: int = 7, repeats: int = 5,
                batch_sizes: tuple[int, ...] = (1, 32), seed: int = 0, device: str = "cpu") -> dict[str, dict]:
    """Median latency of every run's model and of the teacher, in interleaved rounds.

    Args:
        run_dirs: run directories written by ``compress`` or ``prune``.
        teacher_dir: the teacher's run directory (its ratio is 1).
        rounds: interleaved rounds; each gives one median-of-``repeats`` figure per model.
        repeats: timed passes per model per round.
        batch_sizes: batch sizes to time.
        seed: shuffles the order of models within each round.
        device: where to time them.

    Returns:
        ``{run: {"latency_b1_ms", "latency_b32_ms", "ratio_b1", "ratio_b32", "rounds", "threads"}}``
        (keys follow ``batch_sizes``), with the teacher under the key ``"teacher"``.

    Raises:
        CapdistError: a directory holds no loadable model.
    """
    dirs = {"teacher": Path(teacher_dir), **{str(Path(r)): Path(r) for r in run_dirs}}
    models, shapes = {}, {}
    for key, path in dirs.items():
        if not (path / "model.safetensors").is_file():
            raise CapdistError(f"{path} holds no model.safetensors; give run directories written by capdist")
        models[key] = load(path).eval()
        shapes[key] = tuple(read_config(path)["image_shape"])
    rng = random.Random(seed)
    times: dict[str, dict[int, list[float]]] = {k: {b: [] for b in batch_sizes} for k in models}
    for _ in range(rounds):
        order = list(models)
        rng.shuffle(order)
        for b in batch_sizes:
            for key in order:
                rep = measure_latency(models[key], shapes[key], batch_size=b, repeats=repeats, warmup=1,
                                       device=device)
                times[key][b].append(rep.p50_ms)
    result = {}
    for key in models:
        row: dict = {"rounds": rounds, "threads": torch.get_num_threads(), "device": device}
        for b in batch_sizes:
            row[f"latency_b{b}_ms"] = statistics.median(times[key][b])
            row[f"ratio_b{b}"] = statistics.median(
                m / t for m, t in zip(times[key][b], times["teacher"][b], strict=True))
        result[key] = row
    return result
