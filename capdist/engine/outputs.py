"""What every compression run writes: rows of cost and retrieval accuracy with every model timed
side by side with the teacher, the pruned model with its plan and a sample for reload checks, and
the report.

Example:
    >>> rows = model_rows([("teacher", teacher), ("compressed", pruned)], data, "cpu")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn

from ..data import RetrievalData
from ..io.atomic import atomic_write_bytes
from ..io.export import EmbeddingOnly
from ..io.model_card import write_model_card
from ..io.run_dir import save_run
from ..measure.report import cost_row, write_report
from ..measure.timing import time_side_by_side
from .evaluation import evaluate_models

log = logging.getLogger("capdist")
LATENCY_BATCHES = (1, 32)


def model_rows(entries: list[tuple[str, nn.Module]], data: RetrievalData, device: str, repeats: int = 10,
               latency_input_size: tuple[int, ...] | None = None, rounds: int = 5,
               batches: tuple[int, ...] = LATENCY_BATCHES, timer: str = "eager", flip: bool = False,
               rerank: bool = False) -> list[dict]:
    """Cost, symmetric retrieval, asymmetric retrieval against the first entry's gallery (the
    teacher), and latency of every model timed side by side with the teacher in interleaved rounds.

    Args:
        entries: ``(name, model)`` pairs, the teacher first.
        data: evaluation data.
        device: where models are evaluated and timed.
        repeats: passes behind each latency figure (split over ``rounds``).
        latency_input_size: C, H, W to time at (default: the training size).
        rounds: interleaved timing rounds.
        batches: batch sizes to time.
        timer: the timing back-end, a name in :data:`capdist.measure.TIMERS`.
        flip: evaluate with flip test-time augmentation.
        rerank: evaluate with k-reciprocal re-ranking.
    """
    teacher = entries[0][1].to(device)
    shape = tuple(data.image_shape)
    rows = []
    for i, (name, model) in enumerate(entries):
        model = model.to(device)
        log.info("evaluating %s (%d queries)", name, len(data.query))
        row = {"name": name, **cost_row(model, shape),
               "symmetric": evaluate_models(model, data, device=device, flip=flip, rerank=rerank), "asymmetric": {}}
        if i:
            row["asymmetric"] = evaluate_models(model, data, gallery_model=teacher, device=device, flip=flip,
                                                rerank=rerank)
        rows.append(row)
    size = tuple(latency_input_size or shape)
    log.info("timing %d models side by side at %s on %s", len(entries), "x".join(map(str, size)), device)
    timing = time_side_by_side({name: EmbeddingOnly(model) for name, model in entries}, size, batches,
                               rounds=rounds, repeats=max(1, repeats // rounds), device=device,
                               reference=entries[0][0], timer=timer)
    for row in rows:
        t = timing[row["name"]]
        row.update({"latency_device": t["device"], "latency_threads": t["threads"], "latency_runtime": t["runtime"],
                    "latency_precision": t["precision"],
                    "latency_input_size": t["input_size"], "latency_rounds": t["rounds"],
                    "latency_bn_folded": t["bn_folded"]})
        for b in batches:
            cell = t[f"b{b}"]
            row[f"latency_b{b}_ms"] = cell["median_ms"]
            row[f"latency_ratio_b{b}"] = cell["ratio"]
            row[f"latency_spread_b{b}_ms"] = [cell["p10_ms"], cell["p90_ms"]]
            row[f"latency_ratio_range_b{b}"] = [cell["ratio_min"], cell["ratio_max"]]
    return rows


def save_result(out: Path, model: nn.Module, teacher: nn.Module, data: RetrievalData, data_spec: str, plan: dict,
                settings: dict, rows: list[dict], extra: dict, title: str) -> None:
    """Weights, plan, config (architecture + preprocessing), a reload sample, the report and the model
    card (``README.md``)."""
    spec = teacher.spec if hasattr(teacher, "spec") else {}
    config = {"model": spec, "data": data_spec, "image_shape": list(data.image_shape), "mean": data.mean,
              "std": data.std, **settings}
    save_run(out, model, config, plan=plan)
    sample = torch.stack([data.query[i][0] for i in range(min(4, len(data.query)))])
    model = model.cpu().eval()
    with torch.no_grad():
        emb = model(sample)["embedding"]
    atomic_write_bytes(out / "sample.safetensors", save({"images": sample.contiguous(), "embedding": emb}))
    extra = {**extra, "flops_fraction": rows[-1]["flops"] / rows[0]["flops"], "data": data_spec}
    write_report(out, rows, extra, title)
    write_model_card(rows, extra, config, out)
    for leftover in (out / "checkpoint.pt", out / "finetune" / "checkpoint.pt"):
        if leftover.exists():
            leftover.unlink()
