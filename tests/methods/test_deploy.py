"""The export-for-deployment cases (``deploy_cases.py``) run in a Python process of their own, for the
reason ``tests/measure/test_runtimes.py`` gives (OpenVINO's thread pool beside torch's in one long
test process)."""

from pathlib import Path

from capdist.testing.processes import pytest_in_own_process


def test_deploy_cases_pass_in_a_process_of_their_own():
    done = pytest_in_own_process(Path(__file__).with_name("deploy_cases.py"))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
