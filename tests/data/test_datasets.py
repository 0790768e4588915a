"""Dataset specs, layouts, sampling and their errors."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from capdist.data import Augment, IdentityBatchSampler, open_dataset
from capdist.data.arrays import FMNIST_ROOT
from capdist.data.folders import parse_reid_name
from capdist.errors import DataError

HAS_FMNIST = os.path.isdir(FMNIST_ROOT)


def _img(path, value=128, size=(10, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(path)


def test_digits_is_leave_one_out_class_protocol():
    d = open_dataset("digits")
    assert d.protocol == "class" and d.leave_one_out and d.num_classes == 10
    assert d.train[0][0].shape == (3, 16, 16)


@pytest.mark.skipif(not HAS_FMNIST, reason="dataset-fashion-mnist not installed")
def test_fmnist_open_set_has_unseen_test_classes():
    closed, open_ = open_dataset("fmnist"), open_dataset("fmnist-open")
    assert len(closed.train) == 60000 and len(closed.query) == 10000
    assert set(open_.train.pids.tolist()) == {0, 1, 2, 3, 4}
    assert len(open_.query) == 5000 and open_.num_classes == 5


def _write_idx(path, array: np.ndarray) -> None:
    import gzip
    import struct

    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _indices(images: torch.Tensor) -> set[int]:
    """The training index written into pixels (0, 0) and (0, 1) of each image (undoing the normalisation)."""
    raw = (images[:, 0, 0, :2] * 0.3530 + 0.2860) * 255
    return set((raw[:, 0].round() * 250 + raw[:, 1].round()).long().tolist())


def test_validation_splits_never_touch_the_test_images(tmp_path):
    n = 12_000  # training image i carries i in two pixels; every test image is all 255
    train_x = np.zeros((n, 28, 28), np.uint8)
    train_x[:, 0, 0], train_x[:, 0, 1] = np.arange(n) // 250, np.arange(n) % 250
    for name, array in (("train-images-idx3-ubyte.gz", train_x), ("train-labels-idx1-ubyte.gz", np.arange(n) % 10),
                        ("t10k-images-idx3-ubyte.gz", np.full((50, 28, 28), 255)),
                        ("t10k-labels-idx1-ubyte.gz", np.arange(50) % 10)):
        _write_idx(tmp_path / name, array)
    closed = open_dataset(f"fmnist-val:{tmp_path}")
    train, held = _indices(closed.train.images), _indices(closed.query.images)
    assert len(held) == 10_000 and not train & held and train | held == set(range(n))
    assert closed.num_classes == 10 and closed.query is closed.gallery
    assert _indices(open_dataset(f"fmnist-val:{tmp_path}").query.images) == held  # a fixed draw
    open_ = open_dataset(f"fmnist-open-val:{tmp_path}")
    assert _indices(open_.train.images) == {i for i in range(n) if i % 10 < 3}
    assert _indices(open_.query.images) == {i for i in range(n) if i % 10 in (3, 4)}
    assert set(open_.train.pids.tolist()) == {0, 1, 2} and set(open_.query.pids.tolist()) == {0, 1}


def test_pixel_contract_feeds_what_the_model_takes(tmp_path):
    from capdist.data.pixels import PixelContract

    for split in ("train", "test"):
        for cls in ("a", "b"):
            _img(tmp_path / split / cls / "x.png", value=200)
    def first(pixels):
        return open_dataset(f"folder:{tmp_path}", (8, 8), pixels=pixels).train[0][0]

    assert torch.allclose(first(None)[0], torch.full((8, 8), (200 / 255 - 0.485) / 0.229))  # ImageNet, [0, 1]
    assert torch.allclose(first(PixelContract(255)), torch.full((3, 8, 8), 200.0))  # raw: fast-reid normalises inside
    fastreid = PixelContract(255, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
    assert torch.allclose(first(fastreid)[2], torch.full((8, 8), (200 - 103.53) / 57.375), atol=1e-5)
    with pytest.raises(DataError, match="apply to image folders"):
        open_dataset("digits", pixels=PixelContract(255))
    with pytest.raises(DataError, match="--pixel-std must be positive"):
        PixelContract(255, None, (1.0, 0.0, 1.0))


def test_folder_layouts(tmp_path):
    for split in ("train", "test"):
        for cls in ("a", "b"):
            for i in range(3):
                _img(tmp_path / split / cls / f"{i}.png", 40 * i)
    d = open_dataset(f"folder:{tmp_path}", image_size=(8, 8))
    assert d.leave_one_out and len(d.train) == 6 and d.num_classes == 2
    assert d.train[0][0].shape == (3, 8, 8) and d.train[0][0].dtype == torch.float32


def test_market_layout_parses_ids_cameras_and_drops_junk(tmp_path):
    for name in ("0002_c1s1_000451_03.jpg", "0002_c2s1_000452_03.jpg", "0007_c3s1_000001_01.jpg"):
        _img(tmp_path / "bounding_box_train" / name)
    _img(tmp_path / "query" / "0002_c1s1_000500_01.jpg")
    for name in ("0002_c2s1_000600_01.jpg", "0000_c1s1_000001_01.jpg", "-1_c1s1_000002_01.jpg"):
        _img(tmp_path / "bounding_box_test" / name)
    d = open_dataset(f"reid:{tmp_path}")
    assert d.protocol == "reid" and d.num_classes == 2
    assert d.train.pids.tolist() == [0, 0, 1]
    assert d.gallery.pids.tolist() == [0, 2] and d.gallery.camids.tolist() == [0, 1]
    assert parse_reid_name("0001_c001_00016450_0.jpg") == (1, 0)


@pytest.mark.parametrize("spec, message", [
    ("folder:/no/such/place", "does not exist"),
    ("reid:/no/such/place", "does not exist"),
    ("imagenet", "unknown dataset 'imagenet'"),
    ("fmnist:/no/such/place", "Fashion-MNIST folder /no/such/place does not exist"),
])
def test_bad_specs_say_what_and_where(spec, message):
    with pytest.raises(DataError, match=message):
        open_dataset(spec)


def test_empty_folder_and_bad_image_and_bad_names(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no class subfolders"):
        open_dataset(f"folder:{tmp_path / 'empty'}")
    root = tmp_path / "bad"
    for split in ("train", "test"):
        for name in ("a", "b"):
            _img(root / split / name / "ok.png")
    (root / "train" / "a" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png.*--skip-bad-images"):
        open_dataset(f"folder:{root}")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        assert len(open_dataset(f"folder:{root}", skip_bad_images=True).train) == 2
    _img(tmp_path / "reid" / "bounding_box_train" / "person7.jpg")
    with pytest.raises(DataError, match="person7.jpg.*ID_cCAMERA"):
        open_dataset(f"reid:{tmp_path / 'reid'}")


def test_train_cli_bad_data_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "capdist", "train", "--model", "tiny_resnet", "--data",
                           f"folder:{tmp_path / 'missing'}", "--epochs", "1", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: dataset folder")
    assert not out.exists()


def test_pk_batches_are_balanced_and_deterministic():
    pids = torch.arange(40) % 10
    plan = IdentityBatchSampler(pids, batch_size=8, seed=3, instances=2)
    a, b = plan.epoch(1), IdentityBatchSampler(pids, batch_size=8, seed=3, instances=2).epoch(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert len(plan.epoch(0)) == len(plan.epoch(5)) == len(plan) == 5
    for batch in a:
        assert sorted(torch.bincount(pids[batch]).tolist())[-4:] == [2, 2, 2, 2]
    every = torch.cat(a)
    assert len(set(every.tolist())) == 40  # one epoch uses each image once when K divides every identity


def test_augment_is_keyed_per_image():
    x = torch.randn(3, 8, 8)
    aug = Augment(pad=2, flip=True, erase=0.5)
    assert torch.equal(aug(x, 7), aug(x, 7))
    assert any(not torch.equal(aug(x, 7), aug(x, k)) for k in range(8, 12))
    assert aug(x, 7).shape == x.shape
    assert torch.equal(Augment()(x, 7), x)
