"""Run directories: ``model.safetensors`` + ``config.json`` (+ ``plan.json`` for pruned models).

``load(DIR)`` rebuilds the network from the JSON description (architecture, and the
pruning plan replayed on a fresh instance) and loads the safetensors weights: no
pickle anywhere.

Example:
    >>> model = load("runs/teacher")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from ..errors import CheckpointError
from .atomic import atomic_write_json
from .weights import load_weights, save_weights


def save_run(out: str | Path, model: nn.Module, config: dict, plan: dict | None = None) -> None:
    """Write weights and the JSON needed to rebuild ``model``."""
    out = Path(out)
    save_weights(model, out / "model.safetensors")
    if plan is not None:
        atomic_write_json(out / "plan.json", plan)
    atomic_write_json(out / "config.json", config)


def read_config(path: str | Path) -> dict:
    """The ``config.json`` of a run directory."""
    run = Path(path)
    cfg = run / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"{run} is not a capdist run directory (no config.json); "
                              "train one with 'capdist train' or give a weights file with --weights")
    try:
        return json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg} is corrupt ({exc.msg} at line {exc.lineno})") from None


def build_from_config(config: dict) -> nn.Module:
    """A fresh network of the architecture ``config`` describes (random weights)."""
    from ..models import RetrievalNet

    spec = config.get("model")
    if not isinstance(spec, dict) or "backbone" not in spec:
        raise CheckpointError("config.json has no model description")
    return RetrievalNet(**spec)


def load(path: str | Path) -> nn.Module:
    """Rebuild a trained or compressed model from its run directory, in eval mode."""
    from ..compactor import replay

    run = Path(path)
    config = read_config(run)
    model = build_from_config(config)
    plan_file = run / "plan.json"
    if plan_file.is_file():
        try:
            plan = json.loads(plan_file.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{plan_file} is corrupt ({exc.msg})") from None
        if plan.get("kind") == "torch-pruning":
            from ..pruners import replay_history

            replay_history(model, plan)
        else:
            replay(model, plan)
    load_weights(model, run / "model.safetensors")
    return model.eval()
