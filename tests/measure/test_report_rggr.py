"""The report's retrieval-guidance line says who masked what, and why the schedule is the default."""

import pytest

from capdist.measure.report import MOSTLY_NORM, write_report


def _rggr(retrieval_share: float) -> dict:
    norm_share = 1 - retrieval_share
    return {"neighbours": "student", "k": 5, "cost": "flops",
            "flops_removed": {"retrieval": 0.75 * retrieval_share, "norm": 0.75 * norm_share},
            "share_of_target": {"retrieval": retrieval_share, "norm": norm_share},
            "units": {"retrieval": {"total": 7}, "norm": {"total": 70}}}


@pytest.mark.parametrize("retrieval_share, explains", [(0.1, True), (0.6, False)])
def test_the_rggr_line_explains_the_default_only_when_the_top_up_did_most(tmp_path, retrieval_share, explains):
    write_report(tmp_path, [], {"rggr": _rggr(retrieval_share)}, "run")
    line = next(x for x in (tmp_path / "report.md").read_text().splitlines() if x.startswith("- rggr"))
    assert f"({retrieval_share:.0%} of the target's FLOPs reduction)" in line
    assert (MOSTLY_NORM in line) == explains
