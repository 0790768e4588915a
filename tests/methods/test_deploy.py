"""The export-for-deployment cases (``deploy_cases.py``) run in a Python process of their own, for the
reason ``tests/measure/test_runtimes.py`` gives (OpenVINO's thread pool beside torch's in one long
test process)."""

import subprocess
import sys
from pathlib import Path


def test_deploy_cases_pass_in_a_process_of_their_own():
    cases = Path(__file__).with_name("deploy_cases.py")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(cases)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
