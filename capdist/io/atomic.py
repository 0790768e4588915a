"""Atomic file writes (temporary file + rename) and output-directory checks.

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); atomic_write_json(os.path.join(d, "a.json"), {"x": 1})
"""

from __future__ import annotations

import json
import os
import tempfile
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


def prepare_out_dir(path: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Create ``path``; refuse a non-empty directory unless resuming or overwriting.

    Raises:
        OutputExists: the directory holds results and neither flag was given.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputExists(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (overwrite or resume):
        raise OutputExists(f"output directory {out} is not empty; pass --resume to continue the run "
                           "there or --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    return out
