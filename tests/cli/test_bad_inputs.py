"""Bad input: one line on stderr, exit status 2, nothing created (one row per case)."""

import json
import sys

import pytest
import torch

from capdist.cli.main import main
from capdist.io import save_run
from capdist.models import RetrievalNet


def _run(args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["capdist", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    return exit_info.value.code, lines


COMPRESS = ["compress", "--teacher", "tiny_resnet", "--data", "digits"]
PRUNE = ["prune", "--model", "tiny_resnet", "--method", "magnitude", "--data", "digits"]
PROFILE = ["profile", "tiny_resnet", "--input-size", "3,8,8"]
TRAIN = ["train", "--data", "digits", "--epochs", "1"]

CASES = [
    (COMPRESS + ["--batch-size", "6"], "not a positive multiple of K=4"),
    (COMPRESS + ["--batch-size", "0"], "--batch-size"),
    (COMPRESS + ["--batch-size", "16", "--instances", "3"], "not a positive multiple of K=3"),
    (COMPRESS + ["--image-size", "256"], "must be HEIGHTxWIDTH"),
    (COMPRESS + ["--workers", "-1"], "--workers"),
    (COMPRESS + ["--random-erasing", "1.5"], "--random-erasing"),
    (COMPRESS + ["--amp", "fp8"], "--amp"),
    (COMPRESS + ["--amp", "fp16"], "--amp fp16 needs CUDA"),
    (COMPRESS + ["--distill", "nosuchloss"], "nosuchloss"),
    (PRUNE + ["--distill", "nosuchloss"], "nosuchloss"),
    (COMPRESS + ["--mask-warmup", "-1"], "--mask-warmup"),
    (COMPRESS + ["--epochs", "1", "--mask-warmup", "1"], "the mask warm-up"),
    (COMPRESS + ["--target-flops", "0.01"], "below the lowest"),
    (PRUNE + ["--target-flops", "0.001", "--finetune-epochs", "0"], "0.001"),
    (COMPRESS + ["--min-ratio", "2"], "--min-ratio"),
    (COMPRESS + ["--round-to", "0"], "--round-to"),
    (COMPRESS + ["--epochs", "0"], "--epochs"),
    (COMPRESS + ["--epochs", "-1"], "--epochs"),
    (COMPRESS + ["--train-subset", "-5"], "--train-subset"),
    (COMPRESS + ["--mask-ratio", "1.5"], "--mask-ratio"),
    (COMPRESS + ["--target-flops", "0"], "--target-flops"),
    (COMPRESS + ["--teacher-arg", "width"], "must be KEY=VALUE"),
    (PRUNE + ["--target-flops", "1.5"], "--target-flops"),
    (COMPRESS + ["--target-flops", "0.3", "--target-latency", "0.5"], "--target-flops or --target-latency, not both"),
    (PRUNE + ["--target-latency", "0.5", "--target-flops", "0.3"], "--target-flops or --target-latency, not both"),
    (COMPRESS + ["--target-latency", "0"], "--target-latency"),
    (PRUNE + ["--target-latency", "1.2"], "--target-latency"),
    (COMPRESS + ["--latency-batch", "0"], "--latency-batch"),
    (COMPRESS + ["--residual-compactor", "sparse"], "--residual-compactor"),
    (COMPRESS + ["--target-flops", "nan"], "not a finite number"),
    (COMPRESS + ["--penalty", "inf"], "not a finite number"),
    (COMPRESS + ["--mask-ratio", "1.0"], "--mask-ratio"),
    (COMPRESS + ["--distill", "fitnet"], "'fitnet' needs one layer name"),
    (PRUNE + ["--distill", "fitnet"], "'fitnet' needs one layer name"),
    (COMPRESS + ["--epochs", "2", "--student", "nosuchnet"], "unknown model 'nosuchnet'"),
    (COMPRESS + ["--epochs", "2", "--target-flops", "1e-6"], "below the lowest reachable"),
    (COMPRESS + ["--latency-input-size", "3x0x8"], "must be HxW or CxHxW"),
    (["compress", "--teacher", "capdist.testing.user_models:two_outputs", "--data", "digits", "--epochs", "2"],
     "returns a tuple of 2; name the embedding with --embedding-output INDEX"),
    (["compress", "--teacher", "capdist.testing.user_models:logits_in_training", "--data", "digits", "--epochs", "2"],
     "in training mode the model's embedding is 5 wide, in eval mode 8"),
    (["prune", "--teacher", "capdist.testing.user_models:logits_in_training", "--data", "digits"],
     "in training mode the model's embedding is 5 wide, in eval mode 8"),
    (["prune", "--teacher", "capdist.testing.user_models:two_outputs", "--data", "digits"],
     "returns a tuple of 2; name the embedding with --embedding-output INDEX"),
    (TRAIN + ["--model", "nosuchnet"], "unknown model 'nosuchnet'"),
    (TRAIN + ["--model", "tiny_resnet", "--pixel-mean", "1,2"], "'1,2' must be three numbers R,G,B"),
    (COMPRESS + ["--pixel-range", "255"], "apply to image folders"),
    (TRAIN + ["--model", "nosuchpkg.models:build"], "nosuchpkg"),
    (TRAIN + ["--model", "tiny_resnet", "--weights", "/nonexistent/w.safetensors"], "w.safetensors"),
    (TRAIN + ["--model", "tiny_resnet", "--lr", "nan"], "not a finite number"),
    (PROFILE + ["--batch-size", "0"], "--batch-size"),
    (PROFILE + ["--repeats", "0"], "--repeats"),
    (PROFILE + ["--threads", "-1"], "--threads"),
    (PROFILE + ["--device", "tpu"], "--device"),
]
if not torch.cuda.is_available():
    CASES.append((PROFILE + ["--device", "cuda"], "CUDA is not available"))


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(c[0][-2:]) for c in CASES])
def test_bad_option_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, monkeypatch, args, message):
    out = tmp_path / "out"
    extra = ["--out", str(out)] if args[0] in ("compress", "prune", "train") else []
    code, lines = _run(args + extra, capsys, monkeypatch)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error:") and message in lines[0], lines
    assert not out.exists()


@pytest.mark.parametrize(("name", "content", "message"), [
    ("config.json", "[1, 2]", "does not hold an object"),
    ("config.json", "{", "is corrupt"),
    ("plan.json", "[1, 2]", "does not hold a pruning plan"),
    ("config.json", '{"model": {"backbone": "tiny_resnet"}}', "field 'model.num_classes' must be a positive"),
    ("config.json", '{"model": {"backbone": "tiny_resnet", "num_classes": "ten"}}', "'model.num_classes'"),
    ("config.json", '{"model": {"num_classes": 10}}', "field 'model.backbone'"),
    ("plan.json", '{"version": 1, "groups": [{"producers": [], "removed": ["a"]}]}', "'groups[0].removed'"),
    ("plan.json", '{"groups": []}', "field 'version' must be an integer"),
])
def test_corrupt_run_files_are_one_line(tmp_path, capsys, monkeypatch, name, content, message):
    run = tmp_path / "run"
    net = RetrievalNet("tiny_resnet", num_classes=10, backbone_kwargs={"width": 8})
    save_run(run, net, {"model": net.spec})
    (run / name).write_text(content)
    code, lines = _run(["eval", "--model", str(run), "--data", "digits"], capsys, monkeypatch)
    assert code == 2 and len(lines) == 1 and message in lines[0], lines
    if name == "config.json" and content.startswith("["):
        assert json.loads((run / name).read_text()) == [1, 2]  # nothing rewritten


@pytest.mark.parametrize(("recipe", "message"), [
    ("version: 1\nmodel: tiny_resnet\ndata: digits\nepoch: 3\n", "unknown key 'epoch'"),
    ("version: 1\nmodel: tiny_resnet\ndata: digits\nepoch: 3\n", "did you mean 'epochs'?"),
    ("version: 1\nmodel: tiny_resnet\ndata: digits\nlr: fast\n", "Invalid value for '--lr'"),
    ("version: 1\nmodel: tiny_resnet\ndata: digits\nimage-size: 12\n", "must be HEIGHTxWIDTH"),
    ("version: 2\nmodel: tiny_resnet\n", "has version 2; this capdist reads version 1"),
    ("model: tiny_resnet\n", "has no 'version' field"),
    ("version: 1\ncommand: compress\n", "is for 'capdist compress', not 'capdist train'"),
    ("version: 1\nmodel: [tiny\n", "is not valid YAML at line"),
    ("- 1\n- 2\n", "must be a mapping"),
    ("version: 1\nresume: true\n", "unknown key 'resume'"),
], ids=["unknown-key", "nearest-key", "bad-value", "bad-size", "version", "no-version", "other-command",
        "yaml-syntax", "not-mapping", "run-control"])
def test_bad_recipe_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, monkeypatch, recipe, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    out = tmp_path / "out"
    code, lines = _run(["train", "--config", str(path), "--out", str(out), "--epochs", "1"], capsys, monkeypatch)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error:") and message in lines[0], lines
    assert not out.exists()


def test_recipe_may_not_run_python(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "ran"
    path = tmp_path / "recipe.yaml"
    path.write_text(f"version: 1\nmodel: !!python/object/apply:os.system ['touch {marker}']\n")
    code, lines = _run(["train", "--config", str(path), "--out", str(tmp_path / "out")], capsys, monkeypatch)
    assert code == 2 and len(lines) == 1 and "not valid YAML" in lines[0], lines
    assert not marker.exists()


def _png_claiming(path, width, height):
    """A valid PNG whose header claims ``width x height`` pixels (a decompression bomb's header)."""
    import struct
    import zlib

    from PIL import Image

    Image.new("RGB", (4, 4)).save(path)
    raw = bytearray(path.read_bytes())
    ihdr = raw[12:29]
    ihdr[4:12] = struct.pack(">II", width, height)
    raw[12:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(raw))


def _image(path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (120, 30, 200)).save(path)


def _one_class(tmp):
    for split in ("train", "test"):
        for i in range(3):
            _image(tmp / "f" / split / "only" / f"{i}.png")
    return ["train", "--model", "tiny_resnet", "--data", f"folder:{tmp / 'f'}"], "has one class", []


def _msmt_bad_id(tmp):
    base = tmp / "msmt"
    _image(base / "train" / "0001" / "0001_011_01_0303morning_0015_0.jpg")
    (base / "list_train.txt").write_text("0001/0001_011_01_0303morning_0015_0.jpg abc\n")
    return ["train", "--model", "tiny_resnet", "--data", f"reid:{base}"], "malformed line", []


def _bomb(tmp):
    for split, name in (("train", "a"), ("train", "b"), ("test", "a")):
        _image(tmp / "f" / split / name / "ok.png")
    _png_claiming(tmp / "f" / "train" / "b" / "huge.png", 20000, 20000)
    return ["train", "--model", "tiny_resnet", "--data", f"folder:{tmp / 'f'}"], "DecompressionBombError", []


def _run_dir(tmp, width=8, embed_dim=None):
    run = tmp / f"run{width}-{embed_dim}"
    net = RetrievalNet("tiny_resnet", num_classes=10, embed_dim=embed_dim, backbone_kwargs={"width": width})
    save_run(run, net, {"model": net.spec, "image_shape": [3, 16, 16], "data": "digits"})
    return run


def _resume_random_checkpoint(tmp):
    out = tmp / "cut"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")
    (out / "checkpoint.pt").write_bytes(bytes(range(256)) * 8)
    return (["train", "--model", "tiny_resnet", "--data", "digits", "--out", str(out), "--resume"],
            "cannot resume from", [out / "checkpoint.pt"])


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {MARKER}",))


MARKER = "/tmp/capdist-test-pickle-ran"


def _resume_malicious_checkpoint(tmp):
    import pickle

    out = tmp / "cut"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")
    (out / "checkpoint.pt").write_bytes(pickle.dumps({"step": 1, "model": _Evil()}))
    return (["train", "--model", "tiny_resnet", "--data", "digits", "--out", str(out), "--resume"],
            "cannot resume from", [out / "checkpoint.pt"])


def _export_over_weights(tmp):
    run = _run_dir(tmp)
    return (["export", str(run), "--format", "onnx", "--out", str(run / "model.safetensors")],
            "would overwrite the run's own model.safetensors", [run / "model.safetensors"])


def _export_missing_folder(tmp):
    run = _run_dir(tmp)
    return ["export", str(run), "--format", "onnx", "--out", str(tmp / "nope" / "m.onnx")], "does not exist", []


def _export_int8_without_data(tmp):
    run = _run_dir(tmp)
    return (["export", str(run), "--format", "onnx", "--precision", "int8", "--out", str(tmp / "out")], "give --data",
            [])


def _export_torchscript_fp16(tmp):
    run = _run_dir(tmp)
    return (["export", str(run), "--format", "torchscript", "--precision", "fp16", "--out", str(tmp / "out")],
            "float32 only", [])


def _export_openvino_not_xml(tmp):
    run = _run_dir(tmp)
    return ["export", str(run), "--format", "openvino", "--out", str(tmp / "out")], "ends in .xml", []


def _export_spec_without_out(tmp):
    return ["export", "tiny_resnet", "--format", "onnx", "--input-size", "3x16x16"], "give --out", []


def _gallery_other_width(tmp):
    query, gallery = _run_dir(tmp, embed_dim=16), _run_dir(tmp, embed_dim=32)
    return (["eval", "--model", str(query), "--gallery-model", str(gallery), "--data", "digits"],
            "one embedding space", [])


FILE_CASES = [_one_class, _msmt_bad_id, _bomb, _resume_random_checkpoint, _resume_malicious_checkpoint,
              _export_over_weights, _export_missing_folder, _export_int8_without_data, _export_torchscript_fp16,
              _export_openvino_not_xml, _export_spec_without_out, _gallery_other_width]


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.__name__.lstrip("_") for c in FILE_CASES])
def test_bad_file_is_one_line_exit_2_and_changes_nothing(tmp_path, capsys, monkeypatch, case):
    import os

    args, message, kept = case(tmp_path)
    if args[0] == "train" and "--out" not in args:
        args = [*args, "--out", str(tmp_path / "out")]
    before = {p: p.read_bytes() for p in kept}
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    code, lines = _run(args, capsys, monkeypatch)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error:") and message in lines[0], lines
    assert all(p.read_bytes() == b for p, b in before.items())
    assert not os.path.exists(MARKER)
    assert not (tmp_path / "out").exists()


def _report_run(tmp, text):
    run = _run_dir(tmp)
    (run / "report.json").write_text(text)
    return run


@pytest.mark.parametrize(("text", "message"), [
    ("{", "is corrupt"),
    ('{"models": []}', "field 'models' must be a non-empty list"),
    ('{"models": [{"name": "t", "flops": 1, "params": 1, "latency_b1_ms": 1}]}', "'models[0].latency_b32_ms'"),
    ('[1]', "must be an object"),
])
def test_report_on_a_broken_report_is_one_line(tmp_path, capsys, monkeypatch, text, message):
    run = _report_run(tmp_path, text)
    out = tmp_path / "cmp"
    code, lines = _run(["report", str(run), "--out", str(out)], capsys, monkeypatch)
    assert code == 2 and len(lines) == 1 and message in lines[0], lines
    assert not out.exists() and (run / "report.json").read_text() == text


def test_report_out_naming_a_file_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "file.txt"
    out.write_text("mine")
    code, lines = _run(["report", str(_report_run(tmp_path, "{}")), "--out", str(out)], capsys, monkeypatch)
    assert code == 2 and len(lines) == 1 and "is a file" in lines[0], lines
    assert out.read_text() == "mine"
