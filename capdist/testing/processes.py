"""Running a test file in a Python process of its own (for cases whose native thread pools must not
share the long test process, such as OpenVINO's beside torch's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def pytest_in_own_process(path: str | Path) -> subprocess.CompletedProcess:
    """``python -m pytest -q PATH`` in a new process, its output captured."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
                          capture_output=True, text=True)
