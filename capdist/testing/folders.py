"""Market-1501-style image folders written from offline data, for tests and the data benchmark
(``bounding_box_train/``, ``query/``, ``bounding_box_test/``,
files named ``PID_cCAMsSEQ_FRAME_BOX.jpg``).

Each identity is one source class drawn with its own colour tint, so identities are learnable
and test identities are unseen in training.

Example:
    >>> import tempfile
    >>> root = write_reid_folder(tempfile.mkdtemp(), train_ids=4, test_ids=2, per_id=4)
    >>> sorted(p.name for p in root.iterdir())
    ['bounding_box_test', 'bounding_box_train', 'query']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _source(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Gray uint8 images (N, H, W) and labels of ``digits`` or ``fmnist``."""
    if name == "fmnist":
        from ..data.arrays import FMNIST_ROOT, _read_idx

        images = _read_idx(Path(FMNIST_ROOT) / "train-images-idx3-ubyte.gz")
        labels = _read_idx(Path(FMNIST_ROOT) / "train-labels-idx1-ubyte.gz")
        return images, labels.astype(np.int64)
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images * (255.0 / 16.0)).astype(np.uint8), data.target.astype(np.int64)


def write_reid_folder(root: str | Path, train_ids: int = 8, test_ids: int = 4, per_id: int = 6,
                      size: tuple[int, int] = (32, 16), source: str = "digits", seed: int = 0,
                      query_per_id: int = 1, cameras: int = 2, train_images: int | None = None) -> Path:
    """Write a Market-1501-style folder of JPEGs under ``root`` and return its path.

    Args:
        root: directory to create.
        train_ids, test_ids: identities in ``bounding_box_train`` and in ``query`` + ``bounding_box_test``.
        per_id: images per identity (for test identities: gallery images; plus ``query_per_id``).
        size: H, W of the written images.
        source: ``"digits"`` (scikit-learn, always there) or ``"fmnist"`` (Debian package).
        seed: picks the images and tints.
        query_per_id: query images per test identity.
        cameras: camera ids cycle through ``c1..cN``; a query and its gallery matches differ in camera.
        train_images: total training images, spread over the training identities (overrides
            ``per_id`` for them; Market-1501 has 12,936 over 751).
    """
    from PIL import Image

    root = Path(root)
    images, labels = _source(source)
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
    split = {"bounding_box_train": [], "query": [], "bounding_box_test": []}
    for pid in range(1, train_ids + test_ids + 1):
        test = pid > train_ids
        n = per_id + (query_per_id if test else 0)
        if train_images and not test:
            n = train_images // train_ids + (pid <= train_images % train_ids)
        pool = by_class[pid % len(by_class)]
        tint = rng.uniform(0.35, 1.0, size=3)
        for j, idx in enumerate(rng.choice(pool, size=n, replace=len(pool) < n)):
            cam = j % cameras + 1
            if test and j < query_per_id:
                folder, cam = "query", 1
            elif test:
                folder, cam = "bounding_box_test", (j % max(1, cameras - 1)) + 2 if cameras > 1 else 1
            else:
                folder = "bounding_box_train"
            rgb = (images[idx][..., None] * tint[None, None, :]).astype(np.uint8)
            split[folder].append((f"{pid:04d}_c{cam}s1_{j:06d}_00.jpg", rgb))
    for folder, items in split.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, rgb in items:
            Image.fromarray(rgb).resize((size[1], size[0]), Image.BILINEAR).save(root / folder / name, quality=90)
    return root
