"""Atomic file writes (temporary file + rename) and output-directory checks.

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); atomic_write_json(os.path.join(d, "a.json"), {"x": 1})
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputExists


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj) -> None:
    """Write JSON atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def check_out_dir(path: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """What :func:`prepare_out_dir` would refuse, refused now, without creating anything.

    Raises:
        OutputExists: a non-empty directory without ``--resume`` / ``--overwrite``, a file, or
            ``--overwrite`` on a directory that is not a capdist run.
        RunFinished: ``resume`` on a finished run.
    """
    from ..errors import RunFinished

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputExists(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if resume:
            if (out / "model.safetensors").is_file():
                raise RunFinished(f"the run in {out} is finished (model.safetensors is written); nothing to "
                                  "resume, nothing changed (pass --overwrite instead of --resume to redo it)")
        elif overwrite:
            if not any((out / name).exists() for name in RUN_MARKERS):
                raise OutputExists(f"--overwrite replaces capdist runs only, and {out} holds none of "
                                   f"{', '.join(RUN_MARKERS)}; choose another --out")
        else:
            raise OutputExists(f"output directory {out} is not empty; pass --resume to continue the run "
                               "there or --overwrite to replace it")
    return out


RUN_MARKERS = ("config.json", "config.yaml", "metrics.jsonl", "checkpoint.pt", "report.json", "model.safetensors")


def prepare_out_dir(path: str | Path, overwrite: bool = False, resume: bool = False,
                    recipe: tuple[str, dict] | None = None) -> Path:
    """Create ``path`` for a run; refuse a non-empty directory unless resuming or overwriting.

    ``overwrite`` empties a previous run directory first (so nothing of the old run is mistaken
    for the new one); ``resume`` on a run that already wrote its model changes nothing.

    Args:
        path: the run directory.
        overwrite: replace the run there.
        resume: continue the run there.
        recipe: ``(command, options)`` written as ``config.yaml`` for ``--config`` to re-run.

    Raises:
        OutputExists: the directory holds results and neither flag was given, or ``overwrite``
            names a directory that is not a capdist run.
        RunFinished: ``resume`` on a finished run.
    """
    out = check_out_dir(path, overwrite, resume)
    if out.is_dir() and any(out.iterdir()) and overwrite and not resume:
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    if recipe is not None:
        from .recipe import RECIPE_FILE, write_recipe

        write_recipe(out / RECIPE_FILE, *recipe)
    return out


@contextmanager
def removed_on_failure(path: str | Path):
    """Remove ``path`` if the block fails and ``path`` did not hold anything before it: a run whose
    set-up fails (a target it cannot reach, a model it cannot compact) leaves no directory behind."""
    out = Path(path)
    fresh = not out.exists() or (out.is_dir() and not any(out.iterdir()))
    try:
        yield
    except BaseException:
        if fresh and out.is_dir():
            shutil.rmtree(out, ignore_errors=True)
        raise
