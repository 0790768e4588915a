"""Retrieval datasets: a train split plus query and gallery sets with identities and cameras.

Evaluation protocols: ``protocol="class"`` removes the query itself from the gallery
(leave-one-out on a test split); ``protocol="reid"`` removes gallery items with the query's
identity *and* camera (Market-1501 style).

Example:
    >>> from capdist.data import open_dataset
    >>> data = open_dataset("digits")
    >>> data.protocol, len(data.query) == len(data.gallery)
    ('class', True)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.utils.data import Dataset

JUNK_ID = -1


class TensorImages(Dataset):
    """Images already in memory: (N, C, H, W) float or uint8 tensor, ids and camera ids.

    Items are ``(image, pid, camid, index)``; uint8 images are scaled to [0, 1] and normalised
    with ``mean`` / ``std`` on access, and resized to ``size`` (H, W) when given.
    """

    lazy = False

    def __init__(self, images: torch.Tensor, pids: torch.Tensor, camids: torch.Tensor | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None,
                 size: tuple[int, int] | None = None):
        self.images = images
        self.pids = pids.long()
        self.camids = camids.long() if camids is not None else torch.zeros_like(self.pids)
        self.mean, self.std = mean, std
        self._mean = torch.tensor(mean).view(-1, 1, 1) if mean else None
        self._std = torch.tensor(std).view(-1, 1, 1) if std else None
        self.size = tuple(size) if size is not None and tuple(size) != tuple(images.shape[-2:]) else None

    def __len__(self) -> int:
        return len(self.pids)

    def __getitem__(self, i: int):
        image = self.images[i]
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
            if self._mean is not None:
                image = (image - self._mean) / self._std
        if self.size is not None:
            from .transforms import resize

            image = resize(image, self.size)
        return image, int(self.pids[i]), int(self.camids[i]), i

    def take(self, n: int) -> TensorImages:
        """The first ``n`` items."""
        return TensorImages(self.images[:n], self.pids[:n], self.camids[:n], self.mean, self.std, self.size)


@dataclass
class RetrievalData:
    """What training and evaluation need.

    Attributes:
        name: the spec it came from.
        train: training items (labels remapped to 0..num_classes-1).
        query: query items.
        gallery: gallery items (the same object as ``query`` for leave-one-out).
        protocol: ``"class"`` or ``"reid"``.
        num_classes: identities in ``train``.
        image_shape: C, H, W of one image as the model sees it.
        mean, std: per-channel normalisation already applied (kept for export).
        train_loader: a user's own loader of ``train`` (``(images, pids)`` batches with ``len`` and
            ``set_epoch(epoch, start)``), used for training instead of capdist's P x K sampler.
    """

    name: str
    train: Dataset
    query: Dataset
    gallery: Dataset
    protocol: str
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    train_loader: Any = None

    @property
    def leave_one_out(self) -> bool:
        return self.query is self.gallery

    def test_subset(self, n: int | None) -> RetrievalData:
        """The same data with the first ``n`` query items (leave-one-out sets only)."""
        if not n or n >= len(self.query) or not self.leave_one_out:
            return self
        test = self.query.take(n)
        return replace(self, query=test, gallery=test)

    def train_subset(self, n: int | None, seed: int = 0) -> RetrievalData:
        """The same data with at most ``n`` training items (a seeded, class-stratified draw)."""
        if not n or n >= len(self.train):
            return self
        from torch.utils.data import Subset

        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed))[:n]
        sub = Subset(self.train, order.tolist())
        sub.pids = self.train.pids[order]
        return replace(self, train=sub, train_loader=None)
