"""``torch.utils.data`` loaders for training and encoding.

Training batches come from :class:`~capdist.data.sampling.IdentityBatchSampler` as
``(index, augmentation key)`` pairs; workers decode and augment images, pinned memory and
persistent workers keep the device fed. Datasets held in memory gain nothing from workers, so
by default only datasets that decode from disk get them.

Example:
    >>> from capdist.data import open_dataset
    >>> data = open_dataset("digits")
    >>> images, pids = next(iter(eval_loader(data.query, batch_size=8)))[:2]
    >>> images.shape
    torch.Size([8, 3, 16, 16])
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, Dataset

from .sampling import IdentityBatchSampler
from .transforms import Augment

MAX_DEFAULT_WORKERS = 8


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def decodes_from_disk(dataset: Dataset) -> bool:
    """Whether items are decoded on access (then loader workers pay)."""
    base = getattr(dataset, "dataset", dataset)
    return bool(getattr(base, "lazy", False))


def default_workers(dataset: Dataset) -> int:
    """Loader workers when the user names none: the cores (at most 8) for images read from disk,
    none for datasets already in memory."""
    return min(MAX_DEFAULT_WORKERS, available_cores()) if decodes_from_disk(dataset) else 0


class AugmentedItems(Dataset):
    """``dataset[i]`` augmented with its key: items are addressed by ``(index, key)`` pairs."""

    def __init__(self, dataset: Dataset, augment: Augment) -> None:
        self.dataset = dataset
        self.augment = augment

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, key = item
        image, pid = self.dataset[index][:2]
        return self.augment(image, key), pid


def _loader_kwargs(workers: int, pin_memory: bool) -> dict:
    kwargs = {"num_workers": workers, "pin_memory": pin_memory}
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4)
    return kwargs


def train_loader(dataset: Dataset, sampler: IdentityBatchSampler, augment: Augment, workers: int | None = None,
                 pin_memory: bool = False) -> DataLoader:
    """Augmented training batches ``(images, pids)`` in the sampler's order.

    Args:
        dataset: items ``(image, pid, ...)`` with normalised float images.
        sampler: yields this rank's ``(index, key)`` pairs per batch; call ``set_epoch`` on it.
        augment: per-image augmentation.
        workers: loader processes (None: :func:`default_workers`).
        pin_memory: pin batches for fast host-to-device copies (CUDA).
    """
    workers = default_workers(dataset) if workers is None else workers
    return DataLoader(AugmentedItems(dataset, augment), batch_sampler=sampler, **_loader_kwargs(workers, pin_memory))


def eval_loader(dataset: Dataset, batch_size: int = 256, workers: int | None = None,
                pin_memory: bool = False) -> DataLoader:
    """Every item of ``dataset`` in order, in batches ``(images, pids, camids, indices)``."""
    workers = default_workers(dataset) if workers is None else workers
    kwargs = _loader_kwargs(workers, pin_memory)
    kwargs.pop("persistent_workers", None)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **kwargs)


def fetch(dataset: Dataset, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and identities of the items ``idx`` (un-augmented), without a loader."""
    images = getattr(dataset, "images", None)
    if images is not None and images.dtype != torch.uint8 and getattr(dataset, "size", None) is None:
        return images[idx], dataset.pids[idx]
    items = [dataset[int(i)] for i in idx]
    return torch.stack([it[0] for it in items]), torch.tensor([it[1] for it in items])
