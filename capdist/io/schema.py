"""Shape checks for the JSON files of a run directory (``config.json``, ``plan.json``,
``report.json``): a file edited by hand or cut short is refused with the field that is wrong, not
with a traceback from deep inside a rebuild.

Example:
    >>> check_report({"models": []}, "runs/x/report.json")
    Traceback (most recent call last):
    ...
    capdist.errors.CheckpointError: runs/x/report.json: field 'models' must be a non-empty list
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError

NUMBER = (int, float)


def _fail(path, field: str, what: str) -> None:
    raise CheckpointError(f"{path}: field '{field}' {what}")


def _object(value, path, field: str) -> dict:
    if not isinstance(value, dict):
        _fail(path, field, f"must be an object, not {type(value).__name__}")
    return value


def _int_list(value, path, field: str, length: int | None = None) -> None:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value) or (
            length is not None and len(value) != length):
        _fail(path, field, f"must be a list of {length or 'some'} integers")


def check_config(config, path: str | Path) -> dict:
    """``config.json``: an object; a RetrievalNet description with a backbone name and a positive
    class count; an image shape of three positive integers; a source description that is an object."""
    _object(config, path, "(top level)")
    source = config.get("source")
    if source is not None:
        _object(source, path, "source")
        if not isinstance(source.get("kind"), str):
            _fail(path, "source.kind", "must be a string")
    own_class = isinstance(source, dict) and source.get("kind") in ("factory", "timm", "module") \
        and not source.get("wrapped")
    model = config.get("model")
    if not own_class:
        _object(model, path, "model")
        if not isinstance(model.get("backbone"), str):
            _fail(path, "model.backbone", "must be a model name (string)")
        n = model.get("num_classes")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            _fail(path, "model.num_classes", f"must be a positive integer, not {n!r}")
    if "image_shape" in config:
        _int_list(config["image_shape"], path, "image_shape", 3)
    return config


def check_plan(plan, path: str | Path) -> dict:
    """``plan.json``: an object with a version and, for capdist's surgery, a list of groups naming
    their producers and the removed channels."""
    if not isinstance(plan, dict):
        raise CheckpointError(f"{path} does not hold a pruning plan (an object)")
    if not isinstance(plan.get("version"), int):
        _fail(path, "version", "must be an integer")
    if plan.get("kind") == "torch-pruning":
        if not isinstance(plan.get("tp_history"), list):
            _fail(path, "tp_history", "must be a list")
        return plan
    groups = plan.get("groups")
    if not isinstance(groups, list):
        _fail(path, "groups", "must be a list")
    for i, group in enumerate(groups):
        _object(group, path, f"groups[{i}]")
        if not isinstance(group.get("producers"), list):
            _fail(path, f"groups[{i}].producers", "must be a list of layer names")
        _int_list(group.get("removed"), path, f"groups[{i}].removed")
    return plan


def check_report(report, path: str | Path) -> dict:
    """``report.json``: an object whose ``models`` list has, for every model, a name, FLOPs, params,
    latencies and symmetric retrieval metrics."""
    _object(report, path, "(top level)")
    models = report.get("models")
    if not isinstance(models, list) or not models:
        _fail(path, "models", "must be a non-empty list")
    for i, row in enumerate(models):
        _object(row, path, f"models[{i}]")
        for key in ("flops", "params", "latency_b1_ms", "latency_b32_ms"):
            if not isinstance(row.get(key), NUMBER) or isinstance(row.get(key), bool):
                _fail(path, f"models[{i}].{key}", "must be a number")
        if not isinstance(row.get("name"), str):
            _fail(path, f"models[{i}].name", "must be a string")
        sym = _object(row.get("symmetric"), path, f"models[{i}].symmetric")
        if not isinstance(sym.get("mAP"), NUMBER):
            _fail(path, f"models[{i}].symmetric.mAP", "must be a number")
    return report
