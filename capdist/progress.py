"""Progress with an ETA for phases that run longer than a few seconds (decoding, evaluation, latency tables).

A bar appears on stderr only once a phase has run for ``delay`` seconds and only while the
``capdist`` logger shows phase lines, so ``--quiet`` and machine-readable output (``--json``,
stdout) stay clean; short phases print nothing at all.

Example:
    >>> sum(progress(range(3), desc="counting"))
    3
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
             delay: float = 3.0) -> Iterator[T]:
    """``items``, with a tqdm bar (rate and ETA) once the phase has lasted ``delay`` seconds."""
    if not logging.getLogger("capdist").isEnabledFor(logging.INFO):
        yield from items
        return
    from tqdm import tqdm

    with tqdm(items, desc=desc, total=total, unit=unit, delay=delay, leave=False, dynamic_ncols=True,
              mininterval=1.0) as bar:
        yield from bar
