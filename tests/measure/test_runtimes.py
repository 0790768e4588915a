"""The ONNX Runtime and OpenVINO cases (``runtimes_cases.py``) run in a Python process of their own:
OpenVINO's TBB thread pool and torch's OpenMP one, both alive in the long test process, crashed a later
test that exports and reloads a model (a segfault in the full suite, never in the file alone)."""

from pathlib import Path

from capdist.testing.processes import pytest_in_own_process


def test_runtime_cases_pass_in_a_process_of_their_own():
    done = pytest_in_own_process(Path(__file__).with_name("runtimes_cases.py"))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
