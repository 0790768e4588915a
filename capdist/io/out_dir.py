"""Run-directory policy: when a run may write to a directory, and cleaning up after a failed set-up.

A directory that holds results is used only with ``--resume`` (continue the run there) or
``--overwrite`` (replace a capdist run, recognised by :data:`RUN_MARKERS`).

Example:
    >>> import tempfile
    >>> prepare_out_dir(tempfile.mkdtemp()).is_dir()
    True
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputExists, RunFinished
from .recipe import RECIPE_FILE, write_recipe

RUN_MARKERS = ("config.json", "config.yaml", "metrics.jsonl", "checkpoint.pt", "report.json", "model.safetensors")


def check_out_dir(path: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """What :func:`prepare_out_dir` would refuse, refused now, without creating anything.

    Raises:
        OutputExists: a non-empty directory without ``--resume`` / ``--overwrite``, a file, or
            ``--overwrite`` on a directory that is not a capdist run.
        RunFinished: ``resume`` on a finished run.
    """
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
        write_recipe(out / RECIPE_FILE, *recipe)
    return out


@contextmanager
def removed_on_failure(path: str | Path) -> Iterator[None]:
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
