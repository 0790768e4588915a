"""capdist compress end to end on digits, the retrieval schedule, load and export."""

import json
import math
import subprocess
import sys

import pytest
import torch

from capdist.compactor import CompactorConfig, RetrievalSchedule, attach
from capdist.compactor.cost import fvcore_by_module
from capdist.compactor.retrieval_schedule import low_contribution_units
from capdist.engine import TrainConfig
from capdist.errors import CheckpointError, OutputExists, UnreachableTarget
from capdist.io import save_run, save_weights
from capdist.io.export import EmbeddingOnly, export_run
from capdist.methods import CompressConfig, ModelSource, PruneConfig, RunOptions, compress, prune
from capdist.methods.task_loss import CROSS_NCE_WEIGHT
from capdist.models import RetrievalNet
from capdist.settings import configure
from capdist.testing import TinyResNet

FILES = {"model.safetensors", "plan.json", "config.json", "report.json", "report.md", "accuracy_vs_flops.png",
         "metrics.jsonl", "sample.safetensors", "README.md"}


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    net = RetrievalNet("tiny_resnet", num_classes=10, backbone_kwargs={"width": 8})
    save_run(path, net, {"model": net.spec})
    return path


def _config(schedule, scope, epochs=2):
    return CompressConfig.of(target_flops=0.5, schedule=schedule, scope=scope, latency_repeats=2,
                             train=TrainConfig(epochs=epochs, batch_size=32, lr=0.05, progress=False, warmup_epochs=0))


@pytest.mark.parametrize("schedule", ["retrieval", "norm"])
@pytest.mark.parametrize("scope", ["internal", "all"])
def test_compress_end_to_end_writes_every_file(teacher_dir, tmp_path, schedule, scope):
    out = tmp_path / "out"
    report = compress(str(teacher_dir), "digits", _config(schedule, scope), out, RunOptions(train_subset=320))
    assert {p.name for p in out.iterdir() if p.is_file()} == FILES | ({"mask_schedule.png"} if schedule == "retrieval"
                                                                      else set())
    rep = json.loads((out / "report.json").read_text())
    assert "cross_nce" not in rep["loss_terms"], "the paper's objective by default on its own gallery"
    assert rep["models"][0]["latency_ratio_b1"] == rep["models"][0]["latency_ratio_b32"] == 1.0
    for row in rep["models"]:
        assert row["latency_device"] == "cpu" and row["latency_threads"] >= 1 and row["latency_rounds"] >= 1
        assert row["latency_input_size"] == rep["models"][0]["latency_input_size"]
        low, high = row["latency_ratio_range_b32"]
        assert low <= row["latency_ratio_b32"] <= high
    assert "timed side by side with the teacher" in (out / "report.md").read_text()
    kept = [json.loads(line)["flops_kept"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert kept == sorted(kept, reverse=True) and kept[0] <= 1.0 and kept[-1] <= 0.5 * 1.05  # masks only grow
    card = (out / "README.md").read_text()  # the model card states the report's own figures
    final, teacher = rep["models"][-1], rep["models"][0]
    fraction = final["flops"] / teacher["flops"]
    assert f"{fraction:.1%} of the teacher's FLOPs, mAP {final['symmetric']['mAP']:.2%}" in card
    assert f'capdist.load("{out}")' in card and "## Input" in card
    if schedule == "retrieval":
        rggr = rep["rggr"]  # retrieval guidance masks units in a real run, and every FLOP removed is attributed
        removed, shares, history = rggr["flops_removed"], rggr["share_of_target"], rggr["history"]
        assert rggr["units"]["retrieval"]["total"] > 0 and rggr["units"]["norm"]["total"] > 0
        for side in ("retrieval", "norm"):
            assert shares[side] == pytest.approx(removed[side] / (1 - 0.5), abs=1e-3)
            assert removed[side] == pytest.approx(history[-1][side], abs=1e-6)
        for before, after in zip(history[:-1], history[1:], strict=True):
            gained = after["retrieval"] + after["norm"] - before["retrieval"] - before["norm"]
            assert before["flops"] - after["flops"] == pytest.approx(gained, abs=1e-6)
    names = [m["name"] for m in rep["models"]]
    assert names[0] == "teacher" and "compressed (after surgery)" in names
    final = rep["models"][-1]
    assert final["flops"] <= 0.5 * rep["models"][0]["flops"] * 1.0001
    assert {"mAP", "R@1"} <= set(final["symmetric"]) and {"mAP", "R@1"} <= set(final["asymmetric"])
    assert rep["surgery_rel_diff"] <= 1e-4
    assert report["flops_fraction"] <= 0.5
    assert (out / "accuracy_vs_flops.png").read_bytes()[:4] == b"\x89PNG"
    assert not any(p.suffix in (".pt", ".pth", ".pkl") for p in out.rglob("*"))


def test_load_in_fresh_process_reproduces_saved_outputs_and_exports_match(teacher_dir, tmp_path):
    out = tmp_path / "c"
    compress(str(teacher_dir), "digits", _config("retrieval", "all"), out, RunOptions(train_subset=320))
    code = ("import capdist, torch, sys; from safetensors.torch import load_file\n"
            f"s = load_file('{out}/sample.safetensors'); m = capdist.load('{out}')\n"
            "with torch.no_grad(): e = m(s['images'])['embedding']\n"
            "sys.exit(0 if torch.equal(e, s['embedding']) else 1)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    fv = fvcore_by_module(EmbeddingOnly(__import__("capdist").load(out)), (torch.randn(1, 3, 16, 16),))[""]
    assert fv > 0
    for fmt in ("onnx", "torchscript"):
        result = export_run(out, fmt)
        assert result.path.exists() and result.max_abs_diff <= 1e-4
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    config = json.loads((out / "config.json").read_text())
    contract = json.loads(meta["capdist.input"])  # the input contract travels with the file
    assert contract["shape"] == config["image_shape"] == [3, 16, 16] and contract["mean"] == config["mean"]


def test_bad_inputs(teacher_dir, tmp_path):
    save_weights(RetrievalNet("resnet18", num_classes=10), tmp_path / "r18.safetensors")
    with pytest.raises(CheckpointError, match="do not fit RetrievalNet.*(missing|unexpected|shape)"):
        compress(ModelSource("tiny_resnet", str(tmp_path / "r18.safetensors")), "digits",
                 _config("norm", "internal"), tmp_path / "x1")
    assert not (tmp_path / "x1").exists()
    with pytest.raises(UnreachableTarget, match="lowest reachable"):
        compress(str(teacher_dir), "digits", CompressConfig.of(target_flops=0.001, mask_warmup=0.5,
                                                                     train=TrainConfig(epochs=1)),
                 tmp_path / "x2", RunOptions(train_subset=64))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(OutputExists):
        compress(str(teacher_dir), "digits", _config("norm", "all"), busy, RunOptions(train_subset=64))
    assert (busy / "keep.txt").read_text() == "x"


def _group_model():
    net = TinyResNet(in_channels=1, width=8)
    return attach(net, torch.randn(1, 1, 8, 8), CompactorConfig(scope="internal"))


def test_retrieval_schedule_masks_exactly_the_channels_that_contribute_nothing():
    cm = _group_model()
    g = cm.groups[0]
    c = g.channels
    dead = torch.zeros(c, dtype=torch.bool)
    dead[[1, 4, 6]] = True
    gen = torch.Generator().manual_seed(0)
    teacher = torch.rand(64, c, generator=gen) + 0.5
    teacher[:, dead] = 0.0           # the teacher gallery has nothing in these channels
    student = torch.rand(16, c, generator=gen) + 0.5
    sched = RetrievalSchedule(cm, target=0.2, warmup=1, interval=1, k=5, ratio=3 / c)
    sched.observe({}, {g.name: teacher})
    sched.observe({g.name: student}, {})
    assert torch.equal(~g.mask, dead)
    for other in cm.groups[1:]:
        assert other.mask.all()


def test_retrieval_masks_never_shrink_and_cap_holds():
    cm = _group_model()
    gen = torch.Generator().manual_seed(1)
    sched = RetrievalSchedule(cm, target=0.8, warmup=0, interval=1, k=3, ratio=0.5)
    previous = [g.mask.clone() for g in cm.groups]
    for _ in range(12):
        feats = {g.name: torch.rand(8, g.channels, generator=gen) for g in cm.groups}
        sched.observe(feats, {k: v + torch.rand(v.shape, generator=gen) for k, v in feats.items()})
        for g, before in zip(cm.groups, previous, strict=True):
            assert not (g.mask & ~before).any()
        previous = [g.mask.clone() for g in cm.groups]
        flops = cm.flops()
        masked_any = any((~g.mask).any() for g in cm.groups)
        if masked_any:
            # each update stops at the first unit that meets the cap, so the cap is never overshot
            # by more than the last unit masked
            assert flops >= 0.8 * cm.original_flops * 0.9
    sched.top_up()
    assert cm.flops() <= 0.8 * cm.original_flops * 1.0001


def test_teacher_ranked_search_finds_each_sample_itself_first():
    """The authors' search: the batch's teacher features enter the bank, then rank it."""
    gen = torch.Generator().manual_seed(3)
    teacher = torch.randn(6, 10, generator=gen)
    bank = torch.cat([torch.randn(20, 10, generator=gen), teacher])
    student = torch.randn(6, 10, generator=gen)
    # k = 1 with the sample's own teacher feature: the low units are those of |s * t| for that pair
    got = low_contribution_units(student, bank, k=1, ratio=0.3, period=10, rank_by=teacher)
    q, t = torch.nn.functional.normalize(student, dim=1), torch.nn.functional.normalize(teacher, dim=1)
    lows = (q * t).abs().argsort(dim=1)[:, :3]
    expected = torch.ones(10, dtype=torch.bool)
    for row in lows:
        keep = torch.zeros(10, dtype=torch.bool)
        keep[row] = True
        expected &= keep
    assert torch.equal(got, expected)


@pytest.mark.parametrize("neighbours", ["student", "teacher"])
def test_attribution_splits_the_reduction_between_retrieval_guidance_and_norm_top_up(neighbours):
    cm = _group_model()
    start = cm.flops()
    gen = torch.Generator().manual_seed(2)
    sched = RetrievalSchedule(cm, target=0.4, warmup=1, interval=1, k=2, ratio=0.5, deadline=6,
                              neighbours=neighbours)
    with torch.no_grad():
        for c in cm.compactors():
            c.weight.mul_(torch.rand(c.weight.shape[0], generator=gen).view(-1, 1, 1, 1) + 0.1)
    for _ in range(8):
        feats = {g.name: torch.rand(8, g.channels, generator=gen) for g in cm.groups}
        sched.observe(feats, {k: v * (torch.rand(v.shape[1], generator=gen) > 0.3) for k, v in feats.items()})
    sched.top_up()
    report = sched.attribution()
    masked = {g.name: g.spec.period - int(g.kept_units().sum()) for g in cm.groups}
    units = report["units"]
    for name, n in masked.items():
        assert units["retrieval"]["per_group"][name] + units["norm"]["per_group"][name] == n
    removed = report["flops_removed"]
    assert removed["retrieval"] + removed["norm"] == pytest.approx((start - cm.flops()) / cm.original_flops, abs=1e-5)
    assert units["retrieval"]["total"] > 0 and report["neighbours"] == neighbours
    assert [h["step"] for h in report["history"]] == list(range(1, 9))
    restored = RetrievalSchedule(cm, target=0.4, k=2, ratio=0.5, neighbours=neighbours)
    restored.load_state_dict(sched.state_dict())
    assert restored.attribution() == report


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("schedule", ["retrieval", "norm"])
def test_interrupted_compress_resumes_to_the_uninterrupted_result(teacher_dir, tmp_path, monkeypatch, schedule):
    from safetensors.torch import load_file

    from capdist.compactor import NormSchedule

    def config():
        cfg = _config(schedule, "all")
        cfg.train.checkpoint_every = 5
        return cfg

    full = tmp_path / "full"
    compress(str(teacher_dir), "digits", config(), full, RunOptions(train_subset=320))
    cls = RetrievalSchedule if schedule == "retrieval" else NormSchedule
    name = "observe" if schedule == "retrieval" else "step"
    original = getattr(cls, name)

    def dying(self, *args):
        if self.steps == 12:  # after the masks started (warm-up is one epoch of 10 steps), past a checkpoint
            raise _Interrupted
        return original(self, *args)

    monkeypatch.setattr(cls, name, dying)
    cut = tmp_path / "cut"
    with pytest.raises(_Interrupted):
        compress(str(teacher_dir), "digits", config(), cut, RunOptions(train_subset=320))
    assert (cut / "checkpoint.pt").is_file() and not (cut / "model.safetensors").exists()
    monkeypatch.setattr(cls, name, original)
    compress(str(teacher_dir), "digits", config(), cut, RunOptions(train_subset=320, resume=True))
    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert json.loads((full / "plan.json").read_text()) == json.loads((cut / "plan.json").read_text())


def test_deployed_embedding_term_uses_the_necks_running_statistics():
    from capdist.methods.task_loss import RetrievalTaskLoss

    neck = torch.nn.BatchNorm1d(2).train()
    with torch.no_grad():
        neck.running_mean.copy_(torch.tensor([1.0, 0.0]))
        neck.running_var.copy_(torch.tensor([4.0, 1.0]))
        neck.weight.copy_(torch.tensor([2.0, 1.0]))
        neck.bias.zero_()
    task = RetrievalTaskLoss(student_logits=True, teacher_logits=True, feature_weight=3.0, eval_neck=neck,
                             contrastive_weight=2.0)
    s = {"feature": torch.tensor([[3.0, 2.0], [1.0, 0.0]]), "embedding": torch.zeros(2, 2), "logits": torch.zeros(2, 3)}
    t = {"embedding": torch.tensor([[1.0, 2.0], [1.0, 1.0]]), "logits": torch.zeros(2, 3)}
    # deployed: (f - mean) / sqrt(var + eps) * w: [[2, 2], [0, 0]] (eps 1e-5 aside)
    terms = task(s, t, torch.tensor([0, 1]))
    assert float(terms["deployed_emb_mse"]) == pytest.approx(3.0 * (1 + 0 + 1 + 1) / 4, rel=1e-4)
    assert task.weights()["deployed_emb_mse"] == 3.0
    # a zero student embedding is equally similar to both teacher embeddings: cross-entropy log 2
    assert float(terms["cross_nce"]) == pytest.approx(2.0 * math.log(2), rel=1e-6)
    assert task.weights()["cross_nce"] == 2.0
    assert not list(task.parameters())  # the neck is not trained through the loss


def test_cross_nce_weight_follows_the_request_and_the_gallery():
    from capdist.methods.task_loss import task_loss_for

    net = RetrievalNet("tiny_resnet", num_classes=4, backbone_kwargs={"width": 8})
    x = torch.randn(2, 3, 16, 16)
    assert "cross_nce" not in task_loss_for(net, net, x, 4).weights(), "off by default when fine-tuning"
    assert task_loss_for(net, net, x, 4, gallery="teacher").weights()["cross_nce"] == CROSS_NCE_WEIGHT
    assert task_loss_for(net, net, x, 4, contrastive_weight=2.5).weights()["cross_nce"] == 2.5
    assert "cross_nce" not in task_loss_for(net, net, x, 4, gallery="teacher", contrastive_weight=0).weights()


def test_teacher_gallery_mode_keeps_the_teachers_classifier_exactly(teacher_dir, tmp_path):
    out = tmp_path / "compat"
    config = _config("norm", "internal")
    config = configure(config, gallery="teacher", finetune_epochs=1)
    compress(str(teacher_dir), "digits", config, out, RunOptions(train_subset=320))
    from safetensors.torch import load_file

    before, after = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert not torch.equal(before["neck.running_mean"], after["neck.running_mean"])  # the neck keeps adapting
    rep = json.loads((out / "report.json").read_text())
    assert rep["gallery"] == "teacher" and rep["loss_terms"]["deployed_emb_mse"] == 1.0
    assert rep["loss_terms"]["cross_nce"] == CROSS_NCE_WEIGHT
    assert "(teacher gallery)" in rep["method"]
    header = (out / "report.md").read_text().split("\n")[2]
    assert header.index("mAP (teacher gallery)") < header.index("| mAP |")


def test_teacher_head_freezes_the_classifier_and_releases_it_on_copies_too():
    import copy

    from capdist.methods.task_loss import TeacherHead

    net = RetrievalNet("tiny_resnet", num_classes=4, backbone_kwargs={"width": 8}).train()
    head = TeacherHead(net)
    assert not net.classifier.weight.requires_grad and net.neck.weight.requires_grad
    pruned = copy.deepcopy(net)
    head.release(pruned)
    head.release()
    for m in (net, pruned):
        assert m.classifier.weight.requires_grad and not m.neck.bias.requires_grad  # BoT never trains it


def _analytic_timer(monkeypatch):
    """Every latency measured as multiply-adds: the figures no longer depend on the machine's load
    (real timings of the table and the budget are tested in tests/measure)."""
    from capdist.measure import TIMERS
    from capdist.testing.latency import FunctionTimer, multiply_adds

    monkeypatch.setitem(TIMERS, "eager", lambda threads=None: FunctionTimer(multiply_adds))


@pytest.mark.parametrize("schedule", ["norm", "retrieval"])
def test_latency_target_is_predicted_calibrated_and_checked_side_by_side(teacher_dir, tmp_path, monkeypatch, schedule):
    monkeypatch.setenv("CAPDIST_CACHE_DIR", str(tmp_path / "cache"))
    _analytic_timer(monkeypatch)
    cfg = _config(schedule, "all")
    cfg = configure(cfg, target_latency=0.8, latency_table_time=0.002, latency_input_size=(3, 96, 96))
    out = tmp_path / "out"
    report = compress(str(teacher_dir), "digits", cfg, out, RunOptions(train_subset=320))
    budget = report["latency_budget"]
    assert budget["target"] == 0.8 and budget["batch"] == 1 and budget["device"] == "cpu"
    assert budget["predicted"] <= 0.8 + 1e-4
    # the side-by-side figure itself is the benchmark's to judge (docs/benchmarks/latency-224); here it
    # must be the report's own measurement of the result and the 5% verdict must follow from it
    assert budget["measured"] > 0
    assert budget["measured"] == pytest.approx(report["models"][-1]["latency_ratio_b1"], abs=1e-4)
    assert budget["within_5_percent"] == (abs(budget["measured"] / 0.8 - 1) <= 0.05)
    assert report["target_flops"] is None and report["target_latency"] == 0.8
    assert "(latency target 0.8)" in report["method"]
    assert report["round_to"] == budget["calibration"]["round_to"]["chosen"]
    assert set(budget["calibration"]["probes"]) == {"uniform 0.5", "uniform 0.25", "any widths 0.47",
                                                    "multiples of 8 0.47"}
    assert 1 <= len(budget["calibration"]["during_training"]) <= 3
    saved = json.loads((out / "latency_budget.json").read_text())
    assert saved["table"]["key"]["batch"] == 1 and saved["reference_ms"] > 0
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 1
    assert "latency target 80% of the teacher's latency at batch 1" in (out / "report.md").read_text()
    if schedule == "retrieval":
        assert report["rggr"]["cost"] == "latency"
        assert (out / "mask_schedule.png").is_file()


def test_a_round_to_the_user_gave_is_kept_under_a_latency_target(teacher_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CAPDIST_CACHE_DIR", str(tmp_path / "cache"))
    _analytic_timer(monkeypatch)
    cfg = _config("norm", "all")
    cfg = configure(cfg, target_latency=0.8, latency_table_time=0.002, round_to=1, latency_input_size=(3, 96, 96))
    report = compress(str(teacher_dir), "digits", cfg, tmp_path / "out", RunOptions(train_subset=320))
    calibration = report["latency_budget"]["calibration"]
    assert report["round_to"] == 1 and "round_to" not in calibration
    assert set(calibration["probes"]) == {"uniform 0.5", "uniform 0.25"}


def test_the_unpruned_reference_refuses_a_latency_target(tmp_path):
    with pytest.raises(UnreachableTarget, match="cannot meet a latency target"):
        prune("tiny_resnet", "digits", PruneConfig.of(method="none", target_latency=0.5), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prune_bisects_on_the_latency_table(teacher_dir, tmp_path, monkeypatch):
    from capdist.measure import TIMERS
    from capdist.testing.latency import FunctionTimer, multiply_adds

    monkeypatch.setenv("CAPDIST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(TIMERS, "eager", lambda threads=None: FunctionTimer(multiply_adds))
    cfg = PruneConfig.of(method="magnitude", target_latency=0.65, latency_table_time=0.002, finetune_epochs=0,
                      latency_repeats=2, latency_input_size=(3, 48, 48))
    report = prune(str(teacher_dir), "digits", cfg, tmp_path / "out", RunOptions(train_subset=320))
    budget = report["latency_budget"]
    # the table is analytic here (multiply-adds): this network's widths give 0.813, 0.670, 0.644, 0.518, ...
    assert 0.62 <= budget["predicted"] <= 0.65, "the bisection lands just under the target"
    assert budget["measured"] > 0
    assert budget["measured"] == pytest.approx(report["models"][-1]["latency_ratio_b1"], abs=1e-4)
    assert report["target_flops"] is None
    assert report["models"][-1]["flops"] < report["models"][0]["flops"]


def test_report_evaluates_with_flip_and_re_ranking_when_asked(teacher_dir, tmp_path):
    from capdist.data import open_dataset
    from capdist.engine.evaluation import evaluate_models
    from capdist.io.run_dir import load_retrieval

    cfg = PruneConfig.of(method="magnitude", target_flops=0.5, finetune_epochs=0, latency_repeats=1, flip_test=True,
                         rerank=True)
    prune(str(teacher_dir), "digits", cfg, tmp_path / "out", RunOptions(train_subset=320))
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    data, model = open_dataset("digits"), load_retrieval(tmp_path / "out")
    assert rep["models"][-1]["symmetric"]["mAP"] == pytest.approx(
        evaluate_models(model, data, flip=True, rerank=True)["mAP"], abs=1e-6)
    assert rep["models"][-1]["symmetric"]["mAP"] != pytest.approx(evaluate_models(model, data)["mAP"], abs=1e-4)
