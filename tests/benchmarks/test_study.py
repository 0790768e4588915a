"""The benchmark study on digits: every method lands on the requested FLOPs; report errors."""

import json

import pytest

from capdist.benchmarks.compare import ReportError, compare_runs
from capdist.benchmarks.study import PROFILES, run_study
from capdist.errors import CapdistError, UnreachableTarget
from capdist.pruners import prune_to_flops


@pytest.mark.slow
def test_digits_study_lands_every_method_within_two_percent(tmp_path):
    summary = run_study("digits", "digits", tmp_path / "out", runs_root=tmp_path / "runs", echo=lambda s: None)
    rows = summary["protocols"]["digits"]
    assert {r["method"] for r in rows} == set(PROFILES["digits"].methods) | {"unpruned + KD", "unpruned, no KD"}
    teacher = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert teacher["profile"] == "digits"
    for r in rows:
        if r["method"].startswith("unpruned"):
            assert r["target"] == 1.0
            continue
        report = json.loads((tmp_path / "runs" / "digits" / "digits" / f"{r['method']}-35" / "report.json").read_text())
        base = report["models"][0]["flops"]
        assert 0.35 * 0.98 <= r["flops"] / base <= 0.35 + 1e-9, r
    for name in ("comparison.md", "comparison.csv", "map_vs_flops.png", "map_vs_latency.png"):
        assert (tmp_path / "out" / "digits" / name).is_file()
    latency = json.loads((tmp_path / "out" / "digits" / "latency.json").read_text())
    assert set(latency) == {"teacher"} | {r["run"] for r in rows}
    assert latency["teacher"]["ratio_b32"] == 1.0
    for r in rows:  # the table carries the side-by-side figures, not each run's own
        assert r["latency_b32_ms"] == latency[r["run"]]["latency_b32_ms"] > 0
        assert r["latency_ratio_b32"] == latency[r["run"]]["ratio_b32"]
    table = (tmp_path / "out" / "digits" / "comparison.md").read_text()
    assert "side by side" in table
    compared = json.loads((tmp_path / "out" / "digits" / "comparison.json").read_text())["runs"]
    terms = {r["method"]: r["terms"] for r in compared}
    assert all("cdd_block" in t for m, t in terms.items() if m.startswith("cdd"))  # what each side got, stated
    assert all("cdd_block" not in t and "kd" in t for m, t in terms.items() if m in ("magnitude", "taylor"))
    goals = (tmp_path / "out" / "goals.md").read_text()
    assert goals.count("| digits |") == 2 * 5  # five goals for each CDD schedule
    from click.testing import CliRunner

    from capdist.cli.main import cli

    two = [r["run"] for r in rows[:2]]
    res = CliRunner().invoke(cli, ["report", *two, "--out", str(tmp_path / "rep"), "--rounds", "1",
                                   "--retime", str(tmp_path / "runs" / "digits" / "teacher-digits")])
    assert res.exit_code == 0, res.output
    timed = json.loads((tmp_path / "rep" / "latency.json").read_text())
    assert set(timed) == {"teacher", *two} and timed["teacher"]["rounds"] == 1
    assert "side by side" in res.output


def test_report_refuses_mixed_datasets_and_missing_runs(tmp_path):
    for name, data in (("a", "digits"), ("b", "fmnist")):
        run = tmp_path / name
        run.mkdir()
        row = {"name": "x", "flops": 1, "params": 1, "latency_b1_ms": 1.0, "latency_b32_ms": 1.0,
               "symmetric": {"mAP": 0.5, "R@1": 0.5}}
        (run / "report.json").write_text(json.dumps({"models": [row, row], "data": data, "method": "magnitude"}))
    with pytest.raises(ReportError, match="different datasets"):
        compare_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    with pytest.raises(ReportError, match="no report.json"):
        compare_runs([tmp_path / "missing"], tmp_path / "out")


def test_unknown_method_and_unreachable_target():
    import torch

    from capdist.models import RetrievalNet

    net = RetrievalNet("tiny_resnet", num_classes=4).eval()
    with pytest.raises(CapdistError, match="unknown pruning method 'l3'.*magnitude"):
        prune_to_flops(net, torch.randn(1, 3, 16, 16), "l3", 0.5)
    with pytest.raises(UnreachableTarget, match="cannot reach 0.001"):
        prune_to_flops(net, torch.randn(1, 3, 16, 16), "magnitude", 0.001, iterations=3)


def _row(method, target, m_ap, asym=None, ratio=None, flops=None):
    return {"method": method, "target": target, "flops": flops if flops is not None else target * 100, "mAP": m_ap,
            "mAP_asym": asym, "latency_ratio_b32": ratio}


def test_goals_are_judged_from_the_table():
    from capdist.benchmarks.goals import judge

    teacher = {"flops": 100, "symmetric": {"mAP": 0.70}}
    runs = [_row("cdd-norm", 0.25, 0.68, asym=0.695, ratio=0.31), _row("cdd-norm", 0.15, 0.69, ratio=0.30),
            _row("cdd-norm", 0.1, 0.66, ratio=0.1), _row("magnitude", 0.25, 0.69), _row("magnitude", 0.15, 0.60),
            _row("taylor", 0.1, 0.645), _row("magnitude", 0.1, 0.63)]
    got = {r["goal"].split(":")[0]: r for r in judge({"teacher": teacher, "runs": runs})}
    every = got["on or above every baseline at every FLOPs level"]
    assert every["met"] is False and every["detail"] == "25%: 68.00 vs magnitude 69.00"
    assert got["15% FLOPs"]["met"] is True  # 69 >= 70 - 1
    assert got["10% FLOPs"]["met"] is False and "(+1.50)" in got["10% FLOPs"]["detail"]  # 66 < 64.5 + 2
    assert got["25% FLOPs"]["met"] is True  # 69.5 within 1 of 70
    latency = got["latency b32 <= 1.2 x FLOPs fraction x teacher's"]
    assert latency["met"] is False and latency["detail"] == "25%: 0.31 > 0.30; 15%: 0.30 > 0.18"
