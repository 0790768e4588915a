"""The committed small result is re-made by today's code (a drift means the code changed what it computes)."""

import json
from pathlib import Path

import pytest

from capdist.benchmarks.reproduce import COMMITTED, drift, make_small_result

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_committed_small_result_is_re_made(tmp_path):
    committed = json.loads((ROOT / COMMITTED).read_text())
    assert committed["command"] == "python -m capdist.benchmarks.reproduce --write" and committed["commit"]
    assert drift(make_small_result(tmp_path), committed["figures"]) == []


def test_drift_names_what_moved():
    figures = {"teacher_mAP": 0.6, "mAP": 0.4, "mAP_teacher_gallery": 0.2, "flops_fraction": 0.5}
    assert drift(figures, figures) == []
    assert drift({**figures, "mAP": 0.45}, figures) == ["mAP: 0.4000 committed, 0.4500 now"]
