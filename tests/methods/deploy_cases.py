"""Export for deployment: every format and precision is the model it claims to be (parity with
PyTorch, float16 / INT8 tensors in the file), carries its input contract, and with data the file's
own mAP and its mAP against the teacher's gallery are measured by the file's runtime."""

import json
import sys

import pytest
import torch
from torch import nn

from capdist.cli.main import main
from capdist.io import save_run, save_weights
from capdist.io.recipe import write_recipe
from capdist.methods.deploy import DeployConfig, Exportable, deploy
from capdist.models import RetrievalNet

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
SHAPE = [3, 16, 16]


def _run(path, width=8, seed=0):
    torch.manual_seed(seed)
    net = RetrievalNet("tiny_resnet", num_classes=10, backbone_kwargs={"width": width}).eval()
    for m in net.modules():  # statistics of a trained network, so parity is not checked on zeros
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
    save_run(path, net, {"model": net.spec, "image_shape": SHAPE, "data": "digits", "mean": [0.5] * 3,
                         "std": [0.25] * 3})
    return path, net


def _no_leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(("fmt", "exporter"), [("onnx", "torchscript"), ("onnx", "dynamo"), ("openvino", "torchscript"),
                                               ("torchscript", "torchscript")])
def test_float32_files_equal_pytorch_and_carry_the_input_contract(tmp_path, fmt, exporter):
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    run, net = _run(tmp_path / "run")
    summary = deploy(run, DeployConfig(fmt, "fp32", exporter))
    names = {"onnx": "model.onnx", "openvino": "model.xml", "torchscript": "model.torchscript.pt"}
    path = tmp_path / "run" / names[fmt]
    assert summary["file"] == str(path) and path.is_file() and _no_leftovers(run)
    assert summary["relative_diff"] <= 1e-4 and summary["fixed_batch"] is None
    assert json.loads((run / f"{path.name}.json").read_text())["max_abs_diff"] == summary["max_abs_diff"]
    contract = {"shape": SHAPE, "pixels": "[0, 1], then (pixel - mean) / std per channel", "mean": [0.5] * 3,
                "std": [0.25] * 3}
    if fmt == "onnx":
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert json.loads(meta["capdist.input"]) == contract
    if fmt == "openvino":
        import openvino as ov

        assert (run / "model.bin").is_file()
        model = ov.Core().read_model(str(path))
        assert json.loads(model.get_rt_info(["capdist", "input"]).astype(str)) == contract
        x = torch.randn(5, *SHAPE)  # a batch the export never saw: the batch axis stays dynamic
        with torch.no_grad():
            expected = net(x)["embedding"]
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        out = torch.from_numpy(compiled({0: x.numpy()})[0])
        assert (out - expected).abs().max() <= 1e-4 * expected.abs().max()


def _initializer_types(path):
    return {init.data_type for init in onnx.load(str(path)).graph.initializer}


def test_fp16_and_int8_files_hold_what_their_name_says(tmp_path):
    run, _ = _run(tmp_path / "run")
    fp16 = deploy(run, DeployConfig("onnx", "fp16"))
    assert onnx.TensorProto.FLOAT16 in _initializer_types(run / "model.fp16.onnx")
    assert 0 < fp16["relative_diff"] <= 1e-2  # float16 rounding, and no more
    int8 = deploy(run, DeployConfig("onnx", "int8", calibration_images=64), data="digits", test_subset=60)
    graph = onnx.load(str(run / "model.int8.onnx")).graph
    kinds = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds and onnx.TensorProto.INT8 in _initializer_types(
        run / "model.int8.onnx")
    assert 0 < int8["relative_diff"] < 0.5
    assert "exported" in int8 and "asymmetric" not in int8["exported"] and int8["teacher"] is None
    ov8 = deploy(run, DeployConfig("openvino", "int8", calibration_images=64), data="digits", test_subset=60)
    assert (run / "model.int8.xml").is_file() and 0 < ov8["relative_diff"] < 0.5 and _no_leftovers(run)


def test_calibration_leaves_standard_output_to_the_caller(tmp_path, capfd):
    """ONNX Runtime's histogram calibrators print their progress; a summary written to stdout stays clean."""
    run, _ = _run(tmp_path / "run")
    capfd.readouterr()
    summary = deploy(run, DeployConfig("onnx", "int8", calibration_images=16, calibration_method="percentile"),
                     data="digits", test_subset=40)
    assert summary["relative_diff"] > 0 and capfd.readouterr().out == ""


def test_the_recorded_teacher_gives_the_mAP_against_its_gallery(tmp_path):
    """A float32 file's figures are PyTorch's; a student equal to its teacher has asymmetric mAP equal
    to its own; a different teacher (another seed) is what the asymmetric figure reads."""
    teacher_run, _ = _run(tmp_path / "teacher")
    run, _ = _run(tmp_path / "same")
    write_recipe(run / "config.yaml", "compress", {"teacher": str(teacher_run)})
    summary = deploy(run, DeployConfig("onnx"), data="digits", test_subset=80)
    exported, pytorch = summary["exported"], summary["pytorch"]
    assert summary["teacher"] == str(teacher_run)
    assert exported["symmetric"]["mAP"] == pytest.approx(pytorch["symmetric"]["mAP"], abs=1e-4)
    assert exported["asymmetric"]["mAP"] == pytest.approx(exported["symmetric"]["mAP"], abs=1e-4)
    other, _ = _run(tmp_path / "other", seed=1)
    mixed = deploy(run, DeployConfig("onnx"), out=tmp_path / "m.onnx", data="digits", teacher=str(other),
                   test_subset=80)
    assert mixed["teacher"] == str(other)
    assert mixed["exported"]["asymmetric"]["mAP"] < exported["asymmetric"]["mAP"] - 0.05


def test_a_model_spec_exports_from_the_cli(tmp_path, capsys, monkeypatch):
    net = RetrievalNet("tiny_resnet", num_classes=10, backbone_kwargs={"width": 8}).eval()
    item = Exportable.from_model(net, (3, 16, 16))
    direct = deploy(item, DeployConfig("onnx"), out=tmp_path / "direct.onnx")
    assert direct["relative_diff"] <= 1e-4
    weights = tmp_path / "w.safetensors"
    save_weights(RetrievalNet("tiny_resnet", num_classes=10), weights)
    out = tmp_path / "spec.xml"
    monkeypatch.setattr(sys, "argv", ["capdist", "export", "tiny_resnet", "--weights",
                                      str(weights), "--format", "openvino", "--out", str(out),
                                      "--input-size", "3x16x16", "--num-classes", "10"])
    try:
        main()
    except SystemExit as done:
        assert done.code in (0, None), capsys.readouterr().err
    assert out.is_file() and "max |file - pytorch|" in capsys.readouterr().out


def test_what_cannot_be_measured_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    from capdist.errors import CapdistError, UnsupportedModel
    from capdist.methods import deploy as deploy_module

    run, _ = _run(tmp_path / "run")
    before = sorted(p.name for p in run.iterdir())
    narrow = tmp_path / "narrow"
    net = RetrievalNet("tiny_resnet", num_classes=10, embed_dim=4, backbone_kwargs={"width": 8})
    save_run(narrow, net, {"model": net.spec, "image_shape": SHAPE, "data": "digits"})
    with pytest.raises(UnsupportedModel, match="one embedding space"):
        deploy(run, DeployConfig("onnx"), data="digits", teacher=str(narrow), test_subset=20)
    with pytest.raises(CapdistError, match="would overwrite the run's own config.json"):
        deploy(run, DeployConfig("onnx"), out=run / "config")  # its figures would go to config.json
    monkeypatch.setattr(deploy_module, "_figures", lambda *a: (_ for _ in ()).throw(RuntimeError("interrupted")))
    with pytest.raises(RuntimeError):
        deploy(run, DeployConfig("openvino"), data="digits", test_subset=20)
    assert sorted(p.name for p in run.iterdir()) == before  # the file and its weights removed again
