"""Latency of many compressed models measured side by side in one process, so
the ratios are comparable.

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

from pathlib import Path

from ..errors import CapdistError
from ..io.export import EmbeddingOnly
from ..io.run_dir import load_retrieval as load
from ..io.run_dir import read_config
from ..measure.timing import time_side_by_side


def retime_runs(run_dirs: list[str | Path], teacher_dir: str | Path, rounds: int = 7, repeats: int = 5,
                batch_sizes: tuple[int, ...] = (1, 32), seed: int = 0, device: str = "cpu",
                timer: str = "eager") -> dict[str, dict]:
    """Median latency of every run's model and of the teacher, in interleaved rounds.

    Args:
        run_dirs: run directories written by ``compress`` or ``prune``.
        teacher_dir: the teacher's run directory (its ratio is 1).
        rounds: interleaved rounds; each gives one mean-of-``repeats`` figure per model.
        repeats: timed passes per model per round.
        batch_sizes: batch sizes to time.
        seed: shuffles the order of models within each round.
        device: where to time them.
        timer: the runtime to time in, a name in :data:`capdist.measure.TIMERS`.

    Returns:
        ``{run: {"latency_b1_ms", "latency_b32_ms", "ratio_b1", "ratio_b32", "rounds", "threads", "device",
        "runtime", "precision", "bn_folded"}}``
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
    timing = time_side_by_side({k: EmbeddingOnly(m) for k, m in models.items()}, shapes["teacher"], batch_sizes,
                               rounds=rounds, repeats=repeats, warmup=1, device=device, reference="teacher",
                               seed=seed, input_sizes=shapes, timer=timer)
    result = {}
    for key, t in timing.items():
        row: dict = {"rounds": rounds, "threads": t["threads"], "device": t["device"], "runtime": t["runtime"],
                     "precision": t["precision"], "bn_folded": t["bn_folded"]}
        for b in batch_sizes:
            row[f"latency_b{b}_ms"] = t[f"b{b}"]["median_ms"]
            row[f"ratio_b{b}"] = t[f"b{b}"]["ratio"]
        result[key] = row
    return result
