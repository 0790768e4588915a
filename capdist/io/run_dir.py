"""Run directories: ``model.safetensors`` + ``config.json`` (+ ``plan.json`` for pruned models).

``load(DIR)`` rebuilds the network from the JSON description (the recorded source or
architecture, and the pruning plan replayed on a fresh instance) and loads the
safetensors weights: no pickle anywhere.

Example:
    >>> model = load("runs/teacher")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from ..errors import CheckpointError
from ..models import RetrievalNet, build_model
from ..models.view import RetrievalView
from .atomic import atomic_write_json
from .schema import check_config, check_plan
from .weights import load_weights, save_weights


def save_run(out: str | Path, model: nn.Module, config: dict, plan: dict | None = None) -> None:
    """Write weights and the JSON needed to rebuild ``model`` (a user's module inside a
    :class:`RetrievalView` is written as itself, with its source recorded)."""
    out = Path(out)
    if isinstance(model, RetrievalView):
        config = {**config, "source": model.source, "model": config.get("model") or {}}
        model = model.model
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
        config = json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg} is corrupt ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg} does not hold an object")
    return check_config(config, cfg)


def build_from_source(source: dict, model_spec: dict | None = None) -> nn.Module:
    """A fresh model of the recorded source (random weights): the user's own class when it was used as is.

    Raises:
        CheckpointError: the description is incomplete.
    """
    if source.get("kind") in ("factory", "timm") and not source.get("wrapped"):
        return build_model(source["spec"], **(source.get("args") or {}))
    if not isinstance(model_spec, dict) or "backbone" not in model_spec:
        raise CheckpointError("config.json has no model description")
    return RetrievalNet(**model_spec)


def build_from_config(config: dict) -> nn.Module:
    """A fresh network of the architecture ``config`` describes (random weights): the user's own
    class when the run was made from their factory, else a :class:`RetrievalNet`."""
    if not isinstance(config, dict):
        raise CheckpointError("config.json does not hold an object")
    return build_from_source(config.get("source") or {}, config.get("model"))


def load(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a trained or compressed model from its run directory, in eval mode.

    The result is the class the run was made from: the user's own module (pruned shapes
    replayed from ``plan.json``, weights from ``model.safetensors``), whose forward returns
    what the original returned, or a :class:`RetrievalNet`.

    Args:
        path: the run directory.
        model: a fresh, unpruned instance of the architecture to rebuild on (needed when the run
            was made in Python from a module object rather than a named factory).
    """
    from ..compactor import replay

    run = Path(path)
    config = read_config(run)
    if model is None:
        source = config.get("source") if isinstance(config, dict) else None
        if isinstance(source, dict) and source.get("kind") == "module":
            raise CheckpointError(f"{run} was made in Python from a {source.get('class')} object; rebuild it "
                                  "with capdist.load(DIR, model=<a fresh instance of that class>)")
        model = build_from_config(config)
    plan_file = run / "plan.json"
    if plan_file.is_file():
        try:
            plan = json.loads(plan_file.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{plan_file} is corrupt ({exc.msg})") from None
        check_plan(plan, plan_file)
        if plan.get("kind") == "torch-pruning":
            from ..pruners import replay_history

            replay_history(model, plan)
        else:
            replay(model, plan)
    load_weights(model, run / "model.safetensors")
    return model.eval()


def load_retrieval(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """:func:`load`, presented to capdist's engine: a user's module inside a :class:`RetrievalView`."""
    config = read_config(path)
    model = load(path, model)
    source = config.get("source") or {}
    if source.get("kind") in ("factory", "timm", "module") and not source.get("wrapped"):
        return RetrievalView(model, source.get("embedding_output"), source).eval()
    return model
