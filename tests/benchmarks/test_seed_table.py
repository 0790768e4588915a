"""The seed-averaged table: statistics over seeds, and verdicts from Welch's and the paired t-test."""

import json
import math
import statistics

import pytest
from scipy.stats import t as t_dist

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
    # best plain baseline: magnitude 42 +- 2 against CDD 46 +- 1. Welch by hand: se^2 = 1/3 + 4/3,
    # t = 4 / se, df = se^4 / ((1/3)^2/2 + (4/3)^2/2); paired: differences 5, 4, 3, t = 4 / (1/sqrt 3), df 2
    se2 = 1 / 3 + 4 / 3
    welch = 2 * t_dist.sf(4 / math.sqrt(se2), se2**2 / ((1 / 3) ** 2 / 2 + (4 / 3) ** 2 / 2))
    paired = 2 * t_dist.sf(4 * math.sqrt(3), 2)
    assert welch > 0.05 > paired
    assert verdict(entry, "cdd-norm") == (f"+4.00 vs magnitude (Welch p={welch:.3g}, paired p={paired:.3g}): "
                                          "not significant")
    assert verdict(entry, "cdd-norm-stage-loss").endswith("not significant")
    assert baselines_for(entry, "cdd-norm-nce") == ["magnitude-nce"]
    # a row at another budget is judged against the baselines at that budget only, whatever follows it
    longer = {"methods": {"taylor": {}, "magnitude": {}, "taylor-e9": {}}}
    assert baselines_for(longer, "cdd-closed-set-e9-nofeat") == ["taylor-e9"]
    assert baselines_for(longer, "cdd-closed-set-e9") == ["taylor-e9"]
    assert baselines_for(longer, "cdd-default-e12") == []
    # 49 +- 0 against 50 +- 0: no variance, so any difference is certain (scipy's t is infinite)
    assert verdict(entry, "cdd-norm-nce") == "-1.00 vs magnitude-nce (Welch p=0, paired p=0): worse"
    # a gallery-teacher method is judged on asymmetric mAP: 33, 34, 35 against 30, 30, 30
    gallery = verdict(entry, "cdd-norm-gallery-teacher")
    assert gallery.startswith("+4.00 vs magnitude-gallery-teacher (teacher gallery) (Welch p=")
    assert gallery.endswith("better")
    assert verdict(entry, "magnitude-nce") == ""
    assert "| cdd-norm | 0,1,2 | 0.100 | 46.00 ± 1.00 |" in markdown(collect(tmp_path))


def test_rows_of_an_earlier_table_join_the_new_ones_and_keep_their_verdicts(tmp_path):
    from capdist.benchmarks.seed_table import merged

    for seed, (t, m) in enumerate([(0.40, 0.38), (0.41, 0.39), (0.42, 0.40)]):
        _write(tmp_path / "old", "fmnist-10", f"taylor-seed{seed}", t, 0.3)
        _write(tmp_path / "old", "fmnist-10", f"magnitude-seed{seed}", m, 0.3)
        _write(tmp_path / "new", "fmnist-10", f"cdd-taylor-seed{seed}", t + 0.02 + 0.001 * seed, 0.3)
    earlier = json.loads(json.dumps(collect(tmp_path / "old")))  # as read back from seeds.json: string keys
    cells = merged(collect(tmp_path / "new"), earlier)
    assert list(cells["fmnist-10"]["methods"]) == ["cdd-taylor", "magnitude", "taylor"]
    together = collect(tmp_path / "old")
    for seed in range(3):
        _write(tmp_path / "old", "fmnist-10", f"cdd-taylor-seed{seed}", [0.42, 0.431, 0.442][seed], 0.3)
    assert verdict(cells["fmnist-10"], "cdd-taylor") == verdict(collect(tmp_path / "old")["fmnist-10"], "cdd-taylor")
    assert together["fmnist-10"]["methods"]["taylor"] == cells["fmnist-10"]["methods"]["taylor"]
    _write(tmp_path / "other", "fmnist-10", "cdd-taylor-seed0", 0.5, 0.3, teacher=0.6)
    with pytest.raises(Exception, match="do not share a teacher"):
        merged(collect(tmp_path / "other"), earlier)
