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
    assert "side by side" in (tmp_path / "out" / "digits" / "comparison.md").read_text()


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
