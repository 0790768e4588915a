"""Per-image training augmentation on ``torchvision.transforms.v2`` (the BoT re-ID
recipe: resize, pad + random crop, horizontal flip, random erasing).

Each image's random choices come from its own key (see
:func:`capdist.data.sampling.augmentation_key`), never from a global generator, so the
result does not depend on which loader worker handles the image or on what ran before.

Example:
    >>> import torch
    >>> aug = Augment(pad=2, flip=True, erase=0.5)
    >>> x = torch.randn(3, 16, 8)
    >>> torch.equal(aug(x, 7), aug(x, 7)), aug(x, 7).shape
    (True, torch.Size([3, 16, 8]))
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import functional as F

ERASE_SCALE = (0.02, 0.4)
ERASE_RATIO = (0.3, 3.3)


@dataclass(frozen=True)
class Augment:
    """Pad + random crop, horizontal flip and random erasing on one normalised (C, H, W) image.

    Attributes:
        pad: zero padding on every side before cropping back to (H, W) (0: no crop).
        flip: flip with probability one half.
        erase: probability of erasing one rectangle (area 2-40% of the image, aspect 0.3-3.3)
            with zeros, i.e. the dataset mean after normalisation.
    """

    pad: int = 0
    flip: bool = False
    erase: float = 0.0

    @property
    def is_identity(self) -> bool:
        return not self.pad and not self.flip and self.erase <= 0

    def __call__(self, image: torch.Tensor, key: int) -> torch.Tensor:
        if self.is_identity:
            return image
        rng = random.Random(key)
        _, h, w = image.shape
        if self.pad:
            padded = F.pad(image, [self.pad])
            image = F.crop(padded, rng.randint(0, 2 * self.pad), rng.randint(0, 2 * self.pad), h, w)
        if self.flip and rng.random() < 0.5:
            image = F.horizontal_flip(image)
        if self.erase > 0 and rng.random() < self.erase:
            box = _erase_box(rng, h, w)
            if box is not None:
                image = F.erase(image, *box, v=torch.zeros(()), inplace=False)
        return image


def _erase_box(rng: random.Random, h: int, w: int) -> tuple[int, int, int, int] | None:
    """A rectangle as torchvision's RandomErasing draws it (ten tries), from ``rng``."""
    log_ratio = (math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]))
    for _ in range(10):
        area = h * w * rng.uniform(*ERASE_SCALE)
        ratio = math.exp(rng.uniform(*log_ratio))
        eh, ew = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        if 0 < eh < h and 0 < ew < w:
            return rng.randint(0, h - eh), rng.randint(0, w - ew), eh, ew
    return None


def resize(image: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """``image`` at ``size`` (H, W) with antialiasing; unchanged when it already has that size."""
    if size is None or tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.resize(image, list(size), antialias=True)
