"""What every compression run writes: rows of cost and retrieval accuracy, the pruned model with
its plan and a sample for reload checks, and the report (CDD, CVPR 2023 reports mAP vs cost).

Example:
    >>> rows = [model_row("teacher", teacher, None, data, "cpu", 10)]  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn

from ..benchmarks.report import cost_row, write_report
from ..data import RetrievalData
from ..io.atomic import atomic_write_bytes
from ..io.run_dir import save_run
from .retrieval import evaluate_models


def model_row(name: str, model: nn.Module, teacher: nn.Module | None, data: RetrievalData, device: str,
              repeats: int) -> dict:
    """Cost, symmetric retrieval, and asymmetric retrieval against ``teacher``'s gallery when given."""
    model = model.to(device)
    row = {"name": name, **cost_row(model, tuple(data.image_shape), repeats, device),
           "symmetric": evaluate_models(model, data, device=device), "asymmetric": {}}
    if teacher is not None:
        row["asymmetric"] = evaluate_models(model, data, gallery_model=teacher, device=device)
    return row


def save_result(out: Path, model: nn.Module, teacher: nn.Module, data: RetrievalData, data_spec: str, plan: dict,
                settings: dict, rows: list[dict], extra: dict, title: str) -> None:
    """Weights, plan, config (architecture + preprocessing), a reload sample and the report."""
    spec = teacher.spec if hasattr(teacher, "spec") else {}
    save_run(out, model, {"model": spec, "data": data_spec, "image_shape": list(data.image_shape),
                          "mean": data.mean, "std": data.std, **settings}, plan=plan)
    sample = torch.stack([data.query[i][0] for i in range(min(4, len(data.query)))])
    model = model.cpu().eval()
    with torch.no_grad():
        emb = model(sample)["embedding"]
    atomic_write_bytes(out / "sample.safetensors", save({"images": sample.contiguous(), "embedding": emb}))
    extra = {**extra, "flops_fraction": rows[-1]["flops"] / rows[0]["flops"], "data": data_spec}
    write_report(out, rows, extra, title)
    for leftover in (out / "checkpoint.pt", out / "finetune" / "checkpoint.pt"):
        if leftover.exists():
            leftover.unlink()
