"""In-memory image datasets available offline: scikit-learn digits and Fashion-MNIST (IDX).

Example:
    >>> split = load_digits_split(seed=0)
    >>> split.train_x.shape[1:], split.num_classes
    (torch.Size([1, 8, 8]), 10)
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

FMNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FMNIST_HINT = "install it with 'apt-get install dataset-fashion-mnist' (Debian) or pass fmnist:ROOT"


@dataclass
class ArraySplit:
    """Normalised float images (N, C, H, W) and integer labels for train and test."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(torch.cat([self.train_y, self.test_y]).max()) + 1

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])


def _normalise(x: np.ndarray, scale: float) -> torch.Tensor:
    t = torch.from_numpy(x.astype(np.float32) / scale)
    return (t - t.mean()) / t.std()


def load_digits_split(test_fraction: float = 0.3, seed: int = 0) -> ArraySplit:
    """scikit-learn's bundled 8x8 digits (1,797 images), split with a fixed seed."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits dataset needs scikit-learn: pip install 'capdist[digits]'") from None

    data = load_digits()
    x = _normalise(data.images, 16.0).unsqueeze(1)
    y = torch.from_numpy(data.target.astype(np.int64))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return ArraySplit(x[train], y[train], x[test], y[test])


def _read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"Fashion-MNIST file {path} is missing; {FMNIST_HINT}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path} ({exc}); reinstall dataset-fashion-mnist") from None
    magic, = struct.unpack(">I", raw[:4])
    dims = magic & 0xFF
    if magic >> 8 != 0x08 or dims not in (1, 3):
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated ({data.size} of {int(np.prod(shape))} values)")
    return data.reshape(shape)


def load_fmnist_split(root: str = FMNIST_ROOT) -> ArraySplit:
    """Fashion-MNIST's official train (60k) and test (10k) splits from IDX files."""
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"Fashion-MNIST folder {base} does not exist; {FMNIST_HINT}")
    parts = [_read_idx(base / f) for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")]
    train_x = torch.from_numpy(parts[0].astype(np.float32) / 255.0)
    test_x = torch.from_numpy(parts[2].astype(np.float32) / 255.0)
    mean, std = 0.2860, 0.3530
    return ArraySplit(((train_x - mean) / std).unsqueeze(1), torch.from_numpy(parts[1].astype(np.int64)),
                      ((test_x - mean) / std).unsqueeze(1), torch.from_numpy(parts[3].astype(np.int64)))
