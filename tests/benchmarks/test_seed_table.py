"""The seed-averaged table: statistics over seeds and verdicts that count a difference only outside the spread."""

import json
import statistics

import pytest

from capdist.benchmarks.seed_table import baselines_for, collect, markdown, verdict


def _write(root, cell, run, mAP, asym, flops=0.1, teacher=0.5):
    path = root / cell / run
    path.mkdir(parents=True)
    models = [{"symmetric": {"mAP": teacher}, "flops": 100.0},
              {"symmetric": {"mAP": mAP}, "asymmetric": {"mAP": asym}, "flops": 100.0 * flops}]
    (path / "report.json").write_text(json.dumps({"models": models}))


def test_means_spreads_and_verdicts_against_the_matching_baselines(tmp_path):
    runs = {"magnitude": [0.40, 0.42, 0.44], "taylor": [0.41, 0.41, 0.41], "cdd-norm": [0.45, 0.46, 0.47],
            "cdd-norm-stage-loss": [0.40, 0.44, 0.48], "magnitude-nce": [0.50, 0.50, 0.50],
            "cdd-norm-nce": [0.49, 0.49, 0.49], "magnitude-gallery-teacher": [0.30, 0.30, 0.30],
            "cdd-norm-gallery-teacher": [0.45, 0.45, 0.45]}
    for method, values in runs.items():
        for seed, v in enumerate(values):
            asym = 0.33 + 0.01 * seed if method == "cdd-norm-gallery-teacher" else 0.30
            _write(tmp_path, "fmnist-open-10", f"{method}-seed{seed}", v, asym)
    _write(tmp_path, "fmnist-open-10", "not-a-seeded-run", 0.9, 0.9)
    entry = collect(tmp_path)["fmnist-open-10"]
    assert entry["teacher"] == pytest.approx(50.0) and entry["target"] == 0.1
    cdd = entry["methods"]["cdd-norm"]["mAP"]
    assert cdd["mean"] == pytest.approx(46.0) and cdd["std"] == pytest.approx(statistics.stdev([45, 46, 47]))
    assert entry["methods"]["cdd-norm"]["seeds"] == [0, 1, 2]
    # best plain baseline: magnitude 42 +- 2; CDD +4.00 is outside max(1, 2)
    assert verdict(entry, "cdd-norm") == "+4.00 vs magnitude: better, outside one std"
    assert verdict(entry, "cdd-norm-stage-loss") == "+2.00 vs magnitude: inside the spread"
    assert baselines_for(entry, "cdd-norm-nce") == ["magnitude-nce"]
    assert verdict(entry, "cdd-norm-nce") == "-1.00 vs magnitude-nce: worse, outside one std"
    # a gallery-teacher method is judged on asymmetric mAP: 34 +- 1 against 30 +- 0
    assert verdict(entry, "cdd-norm-gallery-teacher") == ("+4.00 vs magnitude-gallery-teacher (teacher gallery): "
                                                          "better, outside one std")
    assert verdict(entry, "magnitude-nce") == ""
    assert "| cdd-norm | 0,1,2 | 0.100 | 46.00 ± 1.00 |" in markdown(collect(tmp_path))
