"""fast-reid models from their config, checked against the real package."""

import pytest
import torch

pytest.importorskip("fastreid.modeling", reason="fast-reid not installed (pip install --no-deps fastreid)")

from fastreid.config import get_cfg  # noqa: E402
from fastreid.modeling import build_model as fastreid_build  # noqa: E402

from capdist.io.sources import open_model  # noqa: E402
from capdist.methods.common import preflight  # noqa: E402
from capdist.models.zoo import FastReIDNet  # noqa: E402

SMALL = {"MODEL.BACKBONE.DEPTH": "18x", "MODEL.BACKBONE.FEAT_DIM": 512}


def _theirs(num_classes=6):
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.BACKBONE.PRETRAIN", False, "MODEL.DEVICE", "cpu", "MODEL.HEADS.NUM_CLASSES",
                         num_classes, "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.FEAT_DIM", 512])
    return fastreid_build(cfg)


def test_a_fastreid_checkpoint_loads_and_embeds_raw_pixels_like_fastreid(tmp_path):
    torch.manual_seed(0)
    theirs = _theirs()
    torch.save({"model": theirs.state_dict(), "iteration": 9}, tmp_path / "model_final.pth")  # as Checkpointer
    opened = open_model("fastreid:", str(tmp_path / "model_final.pth"), {**SMALL, "num_classes": 6})
    assert isinstance(opened.model.model, FastReIDNet) and "random init" not in opened.note
    x = torch.rand(2, 3, 64, 32) * 255
    kept = x.clone()
    with torch.no_grad():
        ours = opened.model.eval()(x)["embedding"]
        assert torch.equal(x, kept)  # fast-reid normalises in place; the adapter does not
        assert torch.allclose(ours, theirs.eval()(x.clone()), atol=1e-5)
        preflight([opened.model], x)  # training mode gives the deployed embedding too (fast-reid: losses)


def test_cli_defaults_to_raw_pixels_for_fastreid_models(tmp_path):
    from capdist.cli.options import open_cli_data
    from capdist.testing.folders import write_reid_folder

    root = write_reid_folder(tmp_path / "reid")
    options = {"pixel_range": None, "pixel_mean": None, "pixel_std": None, "image_size": (16, 8),
               "skip_bad_images": False, "cache_images": False}
    image = open_cli_data(f"reid:{root}", dict(options), "fastreid:").train[0][0]
    assert image.max() > 1.5 and image.min() >= 0  # 0-255 pixels
    assert open_cli_data(f"reid:{root}", dict(options), "resnet50").train[0][0].min() < 0  # ImageNet-normalised


@pytest.mark.slow
def test_compress_a_fastreid_model_reloads_as_its_class(tmp_path, monkeypatch):
    import sys

    from safetensors.torch import load_file

    import capdist
    from capdist.cli.main import main
    from capdist.testing.folders import write_reid_folder

    root = write_reid_folder(tmp_path / "reid")
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["capdist", "compress", "--teacher", "fastreid:", "--teacher-arg",
                                      "MODEL.BACKBONE.DEPTH=18x", "--teacher-arg", "MODEL.BACKBONE.FEAT_DIM=512",
                                      "--data", f"reid:{root}", "--image-size", "64x32", "--epochs", "2",
                                      "--batch-size", "16", "--target-flops", "0.5", "--out", str(out), "--quiet"])
    main()
    model, sample = capdist.load(out), load_file(str(out / "sample.safetensors"))
    assert isinstance(model, FastReIDNet) and float(sample["images"].max()) > 1.5  # fed 0-255 pixels
    with torch.no_grad():
        assert torch.allclose(model(sample["images"]), sample["embedding"], atol=1e-5)
