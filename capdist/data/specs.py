"""Dataset specs as users type them: ``fmnist[:ROOT]``, ``fmnist-open[:ROOT]``, ``digits``,
``folder:PATH``, ``reid:PATH``, and the validation splits ``fmnist-val`` and ``fmnist-open-val``.

The validation splits are carved from Fashion-MNIST's *training* split only, so settings chosen on
them never see a test image: ``fmnist-val`` trains on 50,000 training images and retrieves among the
other 10,000 (a fixed draw); ``fmnist-open-val`` trains on classes 0-2 and retrieves among the
training images of classes 3-4, unseen in training (the test protocol ``fmnist-open`` trains on 0-4
and retrieves among the test images of 5-9).

Example:
    >>> open_dataset("digits").num_classes
    10
"""

from __future__ import annotations

import torch

from ..errors import DataError
from .arrays import FMNIST_ROOT, load_digits_split, load_fmnist_split
from .pixels import PixelContract
from .retrieval import RetrievalData, TensorImages

SPECS = ("fmnist[:ROOT]", "fmnist-open[:ROOT]", "fmnist-val[:ROOT]", "fmnist-open-val[:ROOT]", "digits",
         "folder:PATH", "reid:PATH")
FMNIST_KINDS = ("fmnist", "fmnist-open", "fmnist-val", "fmnist-open-val")
VALIDATION_IMAGES = 10_000
REID_SIZE = (256, 128)


def _gray_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1).contiguous()


def _fmnist_arrays(kind: str, root: str) -> tuple[torch.Tensor, ...]:
    """Train images and labels, then query (= gallery) images and labels, of one protocol."""
    split = load_fmnist_split(root or FMNIST_ROOT)
    if kind.endswith("-val"):
        tx, ty = split.train_x, split.train_y
        if kind == "fmnist-open-val":
            return tx[ty < 3], ty[ty < 3], tx[(ty >= 3) & (ty < 5)], ty[(ty >= 3) & (ty < 5)] - 3
        order = torch.randperm(len(ty), generator=torch.Generator().manual_seed(0))
        held, kept = order[:VALIDATION_IMAGES].sort().values, order[VALIDATION_IMAGES:].sort().values
        return tx[kept], ty[kept], tx[held], ty[held]
    tx, ty, qx, qy = split.train_x, split.train_y, split.test_x, split.test_y
    if kind == "fmnist-open":
        return tx[ty < 5], ty[ty < 5], qx[qy >= 5], qy[qy >= 5] - 5
    return tx, ty, qx, qy


def _fmnist(kind: str, root: str) -> RetrievalData:
    tx, ty, qx, qy = _fmnist_arrays(kind, root)
    test = TensorImages(_gray_to_rgb(qx), qy)
    return RetrievalData(kind, TensorImages(_gray_to_rgb(tx), ty), test, test, "class", int(ty.max()) + 1,
                         (3, 28, 28), [0.2860] * 3, [0.3530] * 3)


def _digits() -> RetrievalData:
    split = load_digits_split()
    up = torch.nn.functional.interpolate
    tx = _gray_to_rgb(up(split.train_x, size=16, mode="nearest"))
    qx = _gray_to_rgb(up(split.test_x, size=16, mode="nearest"))
    test = TensorImages(qx, split.test_y)
    return RetrievalData("digits", TensorImages(tx, split.train_y), test, test, "class", 10, (3, 16, 16))


def _resized(data: RetrievalData, size: tuple[int, int]) -> RetrievalData:
    """In-memory data seen at ``size`` (each image resized on access)."""
    def at(ds: TensorImages) -> TensorImages:
        return TensorImages(ds.images, ds.pids, ds.camids, ds.mean, ds.std, size)

    train, query = at(data.train), at(data.query)
    gallery = query if data.leave_one_out else at(data.gallery)
    return RetrievalData(data.name, train, query, gallery, data.protocol, data.num_classes,
                         (data.image_shape[0], *size), data.mean, data.std)


def parse_image_size(text: str) -> tuple[int, int]:
    """``"256x128"`` -> ``(256, 128)`` (height x width).

    Raises:
        DataError: not two positive integers joined by ``x``.
    """
    parts = str(text).lower().replace(",", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise DataError(f"image size '{text}' must be HEIGHTxWIDTH, e.g. 256x128")
    return int(parts[0]), int(parts[1])


def open_dataset(spec: str, image_size: tuple[int, int] | str | None = None, skip_bad_images: bool = False,
                 cache_images: bool = False, pixels: PixelContract | None = None) -> RetrievalData:
    """Open a dataset from its spec string.

    Args:
        spec: one of ``fmnist[:ROOT]``, ``fmnist-open[:ROOT]``, ``fmnist-val[:ROOT]``,
            ``fmnist-open-val[:ROOT]``, ``digits``, ``folder:PATH``, ``reid:PATH``.
        image_size: H, W the model sees (``(256, 128)`` or ``"256x128"``; default 256x128 for
            re-ID, as the field trains, 64x64 for folders, the native size for Fashion-MNIST and digits).
        skip_bad_images: skip unreadable images with a warning count instead of failing.
        cache_images: decode every image now and keep it in memory (folders; Fashion-MNIST and
            digits are always in memory).
        pixels: the model's input contract (folders; default ``[0, 1]`` pixels, ImageNet mean / std).

    Raises:
        DataError: unknown spec, missing path, empty folder or malformed layout, a pixel contract for
            the in-memory datasets.
    """
    size = parse_image_size(image_size) if isinstance(image_size, str) else image_size
    kind, _, arg = spec.partition(":")
    pixels = pixels or PixelContract()
    if kind in (*FMNIST_KINDS, "digits"):
        if not pixels.default:
            raise DataError(f"--pixel-range / --pixel-mean / --pixel-std apply to image folders (folder:, reid:), "
                            f"not to '{kind}', which is normalised in memory")
        data = _digits() if kind == "digits" else _fmnist(kind, arg)
        return _resized(data, size) if size and tuple(size) != data.image_shape[1:] else data
    if kind in ("folder", "reid"):
        if not arg:
            raise DataError(f"dataset spec '{spec}' needs a path: {kind}:PATH")
        from .folders import Reading, open_folder, open_reid

        if kind == "folder":
            return open_folder(arg, Reading(size or (64, 64), skip_bad_images, cache_images, pixels))
        return open_reid(arg, Reading(size or REID_SIZE, skip_bad_images, cache_images, pixels))
    raise DataError(f"unknown dataset '{spec}'; use one of: {', '.join(SPECS)}")
