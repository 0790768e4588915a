"""Image-folder layouts: class-per-subfolder and the re-ID benchmarks (Market-1501, DukeMTMC-reID,
VeRi-776, MSMT17).

Images are checked when the dataset opens (Pillow reads their headers) and decoded and resized
when a loader asks for them; ``cache=True`` decodes them all up front and keeps them in memory.

Example:
    >>> parse_reid_name("0002_c1s1_000451_03.jpg")
    (2, 0)
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..progress import progress
from .pixels import PixelContract
from .retrieval import JUNK_ID, RetrievalData, TensorImages

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_MARKET = re.compile(r"^(-?\d+)_c(\d+)")


def _open_image(path: Path):
    """Open ``path`` with Pillow; a corrupt file, a non-image or a decompression bomb is a DataError."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise DataError(f"cannot read image {path} ({type(exc).__name__}: {' '.join(str(exc).split())[:100]}); "
                        "fix or remove it, or pass --skip-bad-images") from None


def decode(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """The image at ``path`` as a uint8 (3, H, W) tensor resized to ``size`` (bilinear)."""
    from PIL import Image

    img = _open_image(path)
    try:
        with img:
            rgb = img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
            return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot decode image {path} ({type(exc).__name__}: {' '.join(str(exc).split())[:100]}); "
                        "fix or remove it, or pass --skip-bad-images") from None


def _readable(paths: list[Path], skip_bad: bool) -> list[int]:
    """Indices of the files whose header Pillow reads (all of them unless ``skip_bad``)."""
    kept, bad = [], 0
    for i, path in enumerate(paths):
        try:
            _open_image(path).close()
            kept.append(i)
        except DataError:
            if not skip_bad:
                raise
            bad += 1
    if bad:
        warnings.warn(f"capdist: skipped {bad} unreadable image(s)", stacklevel=3)
    if not kept:
        raise DataError(f"no readable images among {len(paths)} files")
    return kept


class ImageFiles(Dataset):
    """Images on disk, decoded and resized on access; items are ``(image, pid, camid, index)``.

    Args:
        paths: image files.
        pids, camids: identity and camera of each file.
        size: H, W every image is resized to.
        mean, std: per-channel normalisation of the [0, 1] image.
    """

    lazy = True

    def __init__(self, paths: list[Path], pids: torch.Tensor, camids: torch.Tensor, size: tuple[int, int],
                 mean: list[float], std: list[float]) -> None:
        self.paths = [str(p) for p in paths]
        self.pids, self.camids = pids.long(), camids.long()
        self.image_size = tuple(size)
        self.mean, self.std = mean, std
        self._mean = torch.tensor(mean).view(-1, 1, 1)
        self._std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        image = decode(Path(self.paths[i]), self.image_size).float() / 255.0
        return (image - self._mean) / self._std, int(self.pids[i]), int(self.camids[i]), i

    def take(self, n: int) -> ImageFiles:
        """The first ``n`` items."""
        return ImageFiles(self.paths[:n], self.pids[:n], self.camids[:n], self.image_size, self.mean, self.std)

    def cached(self) -> TensorImages:
        """Every image decoded now and kept in memory as uint8."""
        images = torch.stack([decode(Path(p), self.image_size)
                              for p in progress(self.paths, "decoding images", unit="img")])
        return TensorImages(images, self.pids, self.camids, self.mean, self.std)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folder(folder: Path, classes: dict[str, int] | None) -> tuple[list[Path], list[int], dict]:
    if not folder.is_dir():
        raise DataError(f"folder {folder} does not exist")
    names = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not names:
        raise DataError(f"folder {folder} has no class subfolders (expected {folder}/CLASS/*.jpg)")
    classes = classes if classes is not None else {n: i for i, n in enumerate(names)}
    paths, labels = [], []
    for name in names:
        label = classes.setdefault(name, len(classes))
        for p in _images(folder / name):
            paths.append(p)
            labels.append(label)
    if not paths:
        raise DataError(f"folder {folder} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths, labels, classes


@dataclass(frozen=True)
class Reading:
    """How images are read: the size they are resized to, unreadable files skipped or not, decoded once
    into memory or on access, and the model's pixel contract."""

    size: tuple[int, int]
    skip_bad: bool = False
    cache: bool = False
    pixels: PixelContract = PixelContract()


def _image_set(paths, pids, camids, reading: Reading) -> ImageFiles | TensorImages:
    kept = _readable(paths, reading.skip_bad)
    files = ImageFiles([paths[i] for i in kept], torch.tensor([pids[i] for i in kept]),
                       torch.tensor([camids[i] for i in kept]), reading.size, *reading.pixels.normalisation())
    return files.cached() if reading.cache else files


def open_folder(root: str, reading: Reading) -> RetrievalData:
    """``root/train/CLASS/*`` plus ``root/test/CLASS/*`` or ``root/query`` + ``root/gallery``."""
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"dataset folder {base} does not exist")
    paths, labels, classes = _class_folder(base / "train", None)
    if len(set(labels)) < 2:
        raise DataError(f"{base / 'train'} has one class ({next(iter(classes))}); retrieval training needs at "
                        "least two (one subfolder per class)")
    train = _image_set(paths, labels, [0] * len(labels), reading)
    if (base / "test").is_dir():
        p, lab, _ = _class_folder(base / "test", dict(classes))
        test = _image_set(p, lab, [0] * len(lab), reading)
        query = gallery = test
    elif (base / "query").is_dir() and (base / "gallery").is_dir():
        shared = dict(classes)
        p, lab, shared = _class_folder(base / "query", shared)
        query = _image_set(p, lab, [0] * len(lab), reading)
        p, lab, _ = _class_folder(base / "gallery", shared)
        gallery = _image_set(p, lab, [1] * len(lab), reading)
    else:
        raise DataError(f"{base} needs test/ or query/ and gallery/ beside train/")
    return RetrievalData(f"folder:{root}", train, query, gallery, "class", len(set(labels)),
                         (3, *reading.size), *reading.pixels.normalisation())


def parse_reid_name(name: str) -> tuple[int, int]:
    """(identity, camera index from 0) from a Market/Duke/VeRi file name.

    Raises:
        DataError: the name does not start with ``ID_cCAM``.
    """
    match = _MARKET.match(name)
    if not match:
        raise DataError(f"re-ID file name '{name}' does not look like 0002_c1s1_000451_03.jpg "
                        "(ID_cCAMERA...)")
    return int(match.group(1)), int(match.group(2)) - 1


def _reid_dir(folder: Path, reading: Reading, relabel: bool) -> tuple[TensorImages, int]:
    paths = _images(folder)
    if not paths:
        raise DataError(f"re-ID folder {folder} contains no images")
    parsed = [parse_reid_name(p.name) for p in paths]
    keep = [i for i, (pid, _) in enumerate(parsed) if pid != JUNK_ID]
    paths = [paths[i] for i in keep]
    pids = [parsed[i][0] for i in keep]
    cams = [parsed[i][1] for i in keep]
    if relabel:
        mapping = {pid: j for j, pid in enumerate(sorted(set(pids)))}
        pids = [mapping[p] for p in pids]
    return _image_set(paths, pids, cams, reading), len(set(pids))


def _msmt_list(base: Path, listfile: str, folder: str, reading: Reading, relabel: bool):
    lines = (base / listfile).read_text().split("\n")
    paths, pids, cams = [], [], []
    for line in filter(None, (ln.strip() for ln in lines)):
        rel, _, pid = line.rpartition(" ")
        parts = Path(rel).name.split("_")
        if not rel or not pid.lstrip("-").isdigit() or len(parts) < 3 or not parts[2].isdigit():
            raise DataError(f"malformed line in {base / listfile}: '{line[:80]}' (expected "
                            "'PID/PID_SEQ_CAM_....jpg PID' with integer identity and camera)")
        paths.append(base / folder / rel)
        pids.append(int(pid))
        cams.append(int(parts[2]) - 1)
    if relabel:
        mapping = {pid: j for j, pid in enumerate(sorted(set(pids)))}
        pids = [mapping[p] for p in pids]
    return _image_set(paths, pids, cams, reading), len(set(pids))


def open_reid(root: str, reading: Reading) -> RetrievalData:
    """Market-1501 / DukeMTMC-reID, VeRi-776 or MSMT17, detected from the folder layout."""
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"re-ID folder {base} does not exist")
    layouts = {"market/duke": ("bounding_box_train", "query", "bounding_box_test"),
               "veri": ("image_train", "image_query", "image_test")}
    for train_dir, query_dir, gallery_dir in layouts.values():
        if (base / train_dir).is_dir():
            train, classes = _reid_dir(base / train_dir, reading, True)
            if classes < 2:
                raise DataError(f"{base / train_dir} has {classes} identity; re-ID training needs at least two")
            query, _ = _reid_dir(base / query_dir, reading, False)
            gallery, _ = _reid_dir(base / gallery_dir, reading, False)
            return RetrievalData(f"reid:{root}", train, query, gallery, "reid", classes, (3, *reading.size),
                                 *reading.pixels.normalisation())
    if (base / "list_train.txt").is_file():
        train, classes = _msmt_list(base, "list_train.txt", "train", reading, True)
        query, _ = _msmt_list(base, "list_query.txt", "test", reading, False)
        gallery, _ = _msmt_list(base, "list_gallery.txt", "test", reading, False)
        return RetrievalData(f"reid:{root}", train, query, gallery, "reid", classes, (3, *reading.size),
                             *reading.pixels.normalisation())
    raise DataError(f"{base} is not a known re-ID layout (bounding_box_train/ for Market/Duke, "
                    "image_train/ for VeRi, list_train.txt for MSMT17)")
