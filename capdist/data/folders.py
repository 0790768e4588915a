"""Image-folder layouts: class-per-subfolder and the re-ID benchmarks (Market-1501, DukeMTMC-reID,
VeRi-776, MSMT17), as used by CDD (CVPR 2023) and D3still (CVPR 2024).

Images are decoded once with Pillow, resized, and kept in memory as uint8.

Example:
    >>> parse_reid_name("0002_c1s1_000451_03.jpg")
    (2, 0)
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .retrieval import JUNK_ID, RetrievalData, TensorImages

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
_MARKET = re.compile(r"^(-?\d+)_c(\d+)")


def _load(paths: list[Path], size: tuple[int, int], skip_bad: bool) -> tuple[torch.Tensor, list[int]]:
    from PIL import Image, UnidentifiedImageError

    arrays, kept, bad = [], [], 0
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
                arrays.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy())
                kept.append(i)
        except (UnidentifiedImageError, OSError) as exc:
            if not skip_bad:
                raise DataError(f"cannot read image {path} ({type(exc).__name__}); fix or remove it, "
                                "or pass --skip-bad-images") from None
            bad += 1
    if bad:
        warnings.warn(f"capdist: skipped {bad} unreadable image(s)", stacklevel=3)
    if not arrays:
        raise DataError(f"no readable images among {len(paths)} files")
    return torch.from_numpy(np.stack(arrays)), kept


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


def _tensor_set(paths, pids, camids, size, skip_bad) -> TensorImages:
    images, kept = _load(paths, size, skip_bad)
    return TensorImages(images, torch.tensor([pids[i] for i in kept]),
                        torch.tensor([camids[i] for i in kept]), IMAGENET_MEAN, IMAGENET_STD)


def open_folder(root: str, size: tuple[int, int], skip_bad: bool = False) -> RetrievalData:
    """``root/train/CLASS/*`` plus ``root/test/CLASS/*`` or ``root/query`` + ``root/gallery``."""
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"dataset folder {base} does not exist")
    paths, labels, classes = _class_folder(base / "train", None)
    train = _tensor_set(paths, labels, [0] * len(labels), size, skip_bad)
    if (base / "test").is_dir():
        p, lab, _ = _class_folder(base / "test", dict(classes))
        test = _tensor_set(p, lab, [0] * len(lab), size, skip_bad)
        query = gallery = test
    elif (base / "query").is_dir() and (base / "gallery").is_dir():
        shared = dict(classes)
        p, lab, shared = _class_folder(base / "query", shared)
        query = _tensor_set(p, lab, [0] * len(lab), size, skip_bad)
        p, lab, _ = _class_folder(base / "gallery", shared)
        gallery = _tensor_set(p, lab, [1] * len(lab), size, skip_bad)
    else:
        raise DataError(f"{base} needs test/ or query/ and gallery/ beside train/")
    return RetrievalData(f"folder:{root}", train, query, gallery, "class", len(set(labels)),
                         (3, *size), IMAGENET_MEAN, IMAGENET_STD)


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


def _reid_dir(folder: Path, size, skip_bad, relabel: bool) -> tuple[TensorImages, int]:
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
    return _tensor_set(paths, pids, cams, size, skip_bad), len(set(pids))


def _msmt_list(base: Path, listfile: str, folder: str, size, skip_bad, relabel: bool):
    lines = (base / listfile).read_text().split("\n")
    paths, pids, cams = [], [], []
    for line in filter(None, (ln.strip() for ln in lines)):
        rel, _, pid = line.rpartition(" ")
        if not rel:
            raise DataError(f"malformed line in {base / listfile}: '{line}' (expected 'PATH PID')")
        paths.append(base / folder / rel)
        pids.append(int(pid))
        cams.append(int(Path(rel).name.split("_")[2]) - 1)
    if relabel:
        mapping = {pid: j for j, pid in enumerate(sorted(set(pids)))}
        pids = [mapping[p] for p in pids]
    return _tensor_set(paths, pids, cams, size, skip_bad), len(set(pids))


def open_reid(root: str, size: tuple[int, int], skip_bad: bool = False) -> RetrievalData:
    """Market-1501 / DukeMTMC-reID, VeRi-776 or MSMT17, detected from the folder layout."""
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"re-ID folder {base} does not exist")
    layouts = {"market/duke": ("bounding_box_train", "query", "bounding_box_test"),
               "veri": ("image_train", "image_query", "image_test")}
    for train_dir, query_dir, gallery_dir in layouts.values():
        if (base / train_dir).is_dir():
            train, classes = _reid_dir(base / train_dir, size, skip_bad, relabel=True)
            query, _ = _reid_dir(base / query_dir, size, skip_bad, relabel=False)
            gallery, _ = _reid_dir(base / gallery_dir, size, skip_bad, relabel=False)
            return RetrievalData(f"reid:{root}", train, query, gallery, "reid", classes, (3, *size),
                                 IMAGENET_MEAN, IMAGENET_STD)
    if (base / "list_train.txt").is_file():
        train, classes = _msmt_list(base, "list_train.txt", "train", size, skip_bad, True)
        query, _ = _msmt_list(base, "list_query.txt", "test", size, skip_bad, False)
        gallery, _ = _msmt_list(base, "list_gallery.txt", "test", size, skip_bad, False)
        return RetrievalData(f"reid:{root}", train, query, gallery, "reid", classes, (3, *size),
                             IMAGENET_MEAN, IMAGENET_STD)
    raise DataError(f"{base} is not a known re-ID layout (bounding_box_train/ for Market/Duke, "
                    "image_train/ for VeRi, list_train.txt for MSMT17)")
