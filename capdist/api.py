"""Python API for people who hold objects, not names: ``capdist.compress(model, train_data, ...)`` and
``capdist.prune(...)`` (baseline pruners through torch-pruning).

Both take the user's ``nn.Module`` and a ``Dataset`` (or ``DataLoader``) yielding
``(image, label[, camid], ...)`` and return a :class:`Compressed`: the result as the user's own class,
the pruning plan and the report. With ``out`` they also write a run directory that
``capdist.load`` and every CLI command read. The data is taken as given
(:mod:`capdist.data.user`): a ``DataLoader``'s sampler, batch size, workers and transforms train as
they are, labels come from ``targets`` / ``labels`` without decoding images, and capdist adds no
augmentation of its own unless asked (``pad=2, flip=True``).

Example:
    >>> result = capdist.compress(model, train_set, target_flops=0.35, test_data=test_set,
    ...                           epochs=4, out="runs/mine")  # doctest: +SKIP
    >>> result.model, result.report["flops_fraction"]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader, Dataset

from .data.user import from_datasets
from .methods import CompressConfig, PruneConfig, RunOptions
from .methods import compress as compress_run
from .methods import prune as prune_run
from .models import RetrievalNet
from .models.view import RetrievalView
from .settings import configure


@dataclass
class Compressed:
    """What :func:`compress` and :func:`prune` return.

    Attributes:
        model: the smaller model, the user's own class (eval mode).
        plan: the pruning plan (``capdist.compactor.replay`` or torch-pruning history).
        report: the run's ``report.json``.
        out: the run directory, when one was kept.
    """

    model: nn.Module
    plan: dict
    report: dict
    out: Path | None


def _collect(out: Path, keep: bool, original: nn.Module) -> Compressed:
    from .io.run_dir import load

    model = load(out, model=copy.deepcopy(original))
    plan = json.loads((out / "plan.json").read_text()) if (out / "plan.json").is_file() else {}
    report = json.loads((out / "report.json").read_text())
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return Compressed(model, plan, report, out if keep else None)


def _prepare(model: nn.Module, embedding_output) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model = copy.deepcopy(model)
    if isinstance(model, RetrievalNet):
        return model
    cls = type(model)
    return RetrievalView(model, embedding_output, {"kind": "module", "class": f"{cls.__module__}.{cls.__qualname__}",
                                                   "embedding_output": embedding_output})


AS_GIVEN = {"pad": 0, "flip": False}  # the user's transforms are the augmentation


def compress(model: nn.Module, train_data: Dataset | DataLoader, target_flops: float | None = None, *,
             test_data: Dataset | DataLoader | None = None, gallery_data: Dataset | DataLoader | None = None,
             out: str | Path | None = None,
             embedding_output: str | int | None = None, device: str = "auto", overwrite: bool = False,
             config: CompressConfig | None = None, **settings) -> Compressed:
    """Compress ``model`` with CDD to ``target_flops`` of its FLOPs.

    Args:
        model: the trained model (not modified); any module whose output is, or contains, the embedding.
        train_data: ``(image, label)`` items to train on.
        target_flops: FLOPs of the result as a fraction of the model's (default: the config's).
        test_data: items to evaluate retrieval on (leave-one-out), or the queries with ``gallery_data``.
        gallery_data: a separate gallery (re-ID protocol when the items carry camera ids).
        out: keep the run directory here (``capdist.load(out)`` reloads the result).
        embedding_output: dict key or tuple index of the embedding in the model's output.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        overwrite: replace a non-empty ``out``.
        config: a whole :class:`capdist.methods.CompressConfig` (default: its defaults, the CLI's).
        **settings: any setting by the name of its command-line flag (``epochs=4``, ``schedule="norm"``,
            ``lr=0.01``); see ``capdist compress --help``.
    """
    if target_flops is not None:
        settings["target_flops"] = target_flops
    config = configure(config or CompressConfig(), **{**AS_GIVEN, **settings})
    run = Path(out) if out else Path(tempfile.mkdtemp(prefix="capdist-"))
    compress_run(_prepare(model, embedding_output), from_datasets(train_data, test_data, gallery_data), config, run,
                 RunOptions(device=device, overwrite=overwrite))
    return _collect(run, keep=out is not None, original=model)


def prune(model: nn.Module, train_data: Dataset | DataLoader, method: str | None = None,
          target_flops: float | None = None, *, test_data: Dataset | DataLoader | None = None,
          gallery_data: Dataset | DataLoader | None = None, out: str | Path | None = None,
          embedding_output: str | int | None = None, device: str = "auto", overwrite: bool = False,
          config: PruneConfig | None = None, **settings) -> Compressed:
    """Prune ``model`` with a torch-pruning baseline to ``target_flops`` and fine-tune it.

    Args mirror :func:`compress`; ``method`` is one of ``capdist.pruners.METHODS`` and
    ``**settings`` any ``capdist prune`` setting (``finetune_epochs=5``, ``round_to=8``).
    """
    settings.update({k: v for k, v in (("method", method), ("target_flops", target_flops)) if v is not None})
    config = configure(config or PruneConfig(), **{**AS_GIVEN, **settings})
    config.train.epochs = config.finetune_epochs
    run = Path(out) if out else Path(tempfile.mkdtemp(prefix="capdist-"))
    prune_run(_prepare(model, embedding_output), from_datasets(train_data, test_data, gallery_data), config, run,
              RunOptions(device=device, overwrite=overwrite))
    return _collect(run, keep=out is not None, original=model)
