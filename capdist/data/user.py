"""A user's own datasets and loaders as capdist's retrieval data, taken as given: labels read from the
dataset's ``targets`` / ``labels`` / ``pids`` (no image decoded to find them), camera ids from
``camids`` (or the items' third entry) for the re-ID protocol, and a ``DataLoader``'s own sampler,
batch size, workers and transforms used for training as they are.

Example:
    >>> data = from_datasets(train_set, test_set)  # doctest: +SKIP
    >>> data = from_datasets(train_loader, query_set, gallery_set)  # re-ID protocol with camids  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from .retrieval import RetrievalData


def _attribute(dataset: Dataset, names: tuple[str, ...]) -> list[int] | None:
    for name in names:
        values = getattr(dataset, name, None)
        if values is not None and len(values) == len(dataset):
            return [int(v) for v in (values.tolist() if isinstance(values, torch.Tensor) else values)]
    return None


def _read_items(dataset: Dataset) -> tuple[list[int], list[int]]:
    """Labels and camera ids from the items themselves (decodes every image once)."""
    labels, cams = [], []
    try:
        for i in range(len(dataset)):
            item = dataset[i]
            labels.append(int(item[1]))
            cams.append(int(item[2]) if len(item) > 2 and isinstance(item[2], (int, torch.Tensor)) else 0)
    except (TypeError, IndexError, ValueError) as exc:
        raise DataError(f"the dataset must yield (image, label) pairs with integer labels: {exc}") from None
    return labels, cams


class LabeledImages(Dataset):
    """A user's dataset of ``(image, label[, camid], ...)`` with labels remapped to ``0..n-1``.

    Items are ``(image, pid, camid, index)`` like capdist's own datasets.

    Args:
        dataset: the user's dataset (a ``DataLoader``'s ``dataset`` is taken from it).
        classes: a label mapping to extend (a query set's, for its gallery).
    """

    def __init__(self, dataset: Dataset | DataLoader, classes: dict | None = None) -> None:
        if isinstance(dataset, DataLoader):
            dataset = dataset.dataset
        self.dataset = dataset
        labels = _attribute(dataset, ("targets", "labels", "pids"))
        cams = _attribute(dataset, ("camids", "cams"))
        if labels is None:
            labels, read_cams = _read_items(dataset)
            cams = cams or read_cams
        if not labels:
            raise DataError("the dataset is empty")
        self.classes = dict(classes or {})
        for c in sorted(set(labels)):
            self.classes.setdefault(c, len(self.classes))
        self.pids = torch.tensor([self.classes[c] for c in labels])
        self.camids = torch.tensor(cams) if cams else torch.zeros_like(self.pids)

    def __len__(self) -> int:
        return len(self.pids)

    def __getitem__(self, i: int):
        image = self.dataset[i][0]
        if not isinstance(image, torch.Tensor):
            raise DataError(f"item {i} is a {type(image).__name__}, not a tensor (add a ToImage/ToDtype transform)")
        return image.float(), int(self.pids[i]), int(self.camids[i]), i


class UserBatches:
    """A user's ``DataLoader`` as the training loop's batches: ``(images, pids)`` with labels remapped,
    its own sampler, batch size, workers and transforms; ``set_epoch`` reaches a sampler that has one
    (``DistributedSampler``) and skips the batches a resumed run already saw."""

    def __init__(self, loader: DataLoader, classes: dict) -> None:
        self.loader, self.classes = loader, classes
        self.skip = 0

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if hasattr(self.loader.sampler, "set_epoch"):
            self.loader.sampler.set_epoch(epoch)
        self.skip = start

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i, batch in enumerate(self.loader):
            if i < self.skip:
                continue
            labels = batch[1].tolist() if isinstance(batch[1], torch.Tensor) else list(batch[1])
            yield batch[0].float(), torch.tensor([self.classes[int(c)] for c in labels])


def from_datasets(train: Dataset | DataLoader, test: Dataset | DataLoader | None = None,
                  gallery: Dataset | DataLoader | None = None, name: str = "python") -> RetrievalData:
    """Retrieval data from a user's datasets.

    Args:
        train: training items, or a ``DataLoader`` whose batching is used as given.
        test: queries; searched leave-one-out without ``gallery`` (class protocol). Without it the
            training images are (the report then measures fit, not generalisation).
        gallery: a separate gallery: the re-ID protocol (same identity *and* camera removed) when
            the items carry camera ids, else plain query-vs-gallery retrieval.
    """
    train_set = LabeledImages(train)
    if train_set.pids.unique().numel() < 2:
        raise DataError("the training data has fewer than two classes; retrieval needs at least two")
    query = LabeledImages(test) if test is not None else train_set
    gallery_set = LabeledImages(gallery, query.classes) if gallery is not None else query
    reid = gallery is not None and bool(query.camids.any() or gallery_set.camids.any())
    loader = UserBatches(train, train_set.classes) if isinstance(train, DataLoader) else None
    return RetrievalData(name, train_set, query, gallery_set, "reid" if reid else "class",
                         int(train_set.pids.max()) + 1, tuple(train_set[0][0].shape), train_loader=loader)
