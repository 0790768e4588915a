"""torchreid models as a torchreid user names them, checked against the real package."""

import json

import pytest
import torch

torchreid_models = pytest.importorskip("torchreid.reid.models", reason="torchreid not installed (capdist[torchreid])")

from capdist.cli.main import main  # noqa: E402
from capdist.io.sources import open_model  # noqa: E402
from capdist.methods.common import preflight  # noqa: E402
from capdist.models.factory import build_model  # noqa: E402
from capdist.models.view import RetrievalView  # noqa: E402


def test_the_documented_name_resolves_through_the_re_exported_attribute():
    # torchreid.models is an attribute torchreid re-exports, not an importable module
    net = build_model("torchreid.models:build_model", name="osnet_x0_25", num_classes=7, loss="triplet",
                      pretrained=False)
    assert type(net).__name__ == "OSNet" and net.classifier.out_features == 7


def _saved_checkpoint(tmp_path, net):
    from torchreid.reid.utils import save_checkpoint

    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    save_checkpoint({"state_dict": net.state_dict(), "epoch": 3, "rank1": 0.5, "optimizer": optimizer.state_dict()},
                    str(tmp_path))
    return tmp_path / "model.pth.tar-3"


def test_torchreid_spec_loads_a_save_checkpoint_file_and_embeds_like_torchreid(tmp_path):
    torch.manual_seed(0)
    theirs = torchreid_models.build_model(name="osnet_x0_25", num_classes=11, loss="triplet", pretrained=False)
    weights = _saved_checkpoint(tmp_path, theirs)
    opened = open_model("torchreid:osnet_x0_25", str(weights), {"num_classes": 11})
    assert isinstance(opened.model, RetrievalView) and "random init" not in opened.note
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(opened.model.eval()(x)["embedding"], theirs.eval()(x))
        preflight([opened.model], x)  # training output (logits, features): features are the embedding
        assert opened.model.train()(x)["embedding"].shape == (2, 512)


def test_softmax_loss_is_refused_before_training(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["capdist", "compress", "--teacher", "torchreid:osnet_x0_25", "--teacher-arg",
                                     "loss=softmax", "--data", "digits", "--epochs", "2",
                                     "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    code = exit_info.value.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "in training mode the model's embedding is 10 wide" in err[0], err
    assert not (tmp_path / "out").exists()


def test_unknown_torchreid_name_is_one_line_with_close_matches():
    from capdist.errors import UnsupportedModel

    with pytest.raises(UnsupportedModel, match="unknown torchreid model 'osnet_x9'.*osnet_x1_0"):
        build_model("torchreid:osnet_x9")


def test_the_embedding_of_a_factory_spec_is_found_in_its_training_tuple(caplog):
    import logging

    opened = open_model("torchreid.models:build_model", None, {"name": "osnet_x0_25", "num_classes": 5,
                                                               "loss": "triplet", "pretrained": False})
    assert opened.model.output is None
    with caplog.at_level(logging.INFO, logger="capdist"):
        preflight([opened.model], torch.randn(2, 3, 64, 32))
    assert opened.model.output == 1 and opened.model.source["embedding_output"] == 1
    assert "entry 1 of the model's training-mode output" in caplog.text


@pytest.mark.slow
def test_compress_a_torchreid_checkpoint_with_one_command_reloads_as_its_class(tmp_path, monkeypatch):
    import sys

    from safetensors.torch import load_file

    import capdist
    from capdist.testing.folders import write_reid_folder

    root = write_reid_folder(tmp_path / "reid")
    torch.manual_seed(0)
    theirs = torchreid_models.build_model(name="osnet_x0_25", num_classes=8, loss="triplet", pretrained=False)
    weights = _saved_checkpoint(tmp_path, theirs)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["capdist", "compress", "--teacher", "torchreid:osnet_x0_25", "--teacher-arg",
                                      "num_classes=8", "--weights", str(weights), "--data", f"reid:{root}",
                                      "--image-size", "64x32", "--epochs", "2", "--batch-size", "16",
                                      "--target-flops", "0.5", "--out", str(out), "--quiet"])
    main()
    model, sample = capdist.load(out), load_file(str(out / "sample.safetensors"))
    assert type(model).__name__ == "OSNet"
    with torch.no_grad():
        assert torch.allclose(model(sample["images"]), sample["embedding"], atol=1e-5)
    report = json.loads((out / "report.json").read_text())
    assert report["flops_fraction"] <= 0.5 and report["models"][0]["symmetric"]["mAP"] > 0
