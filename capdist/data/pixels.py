"""The input contract of a model: the pixel range it expects and the normalisation applied before it.

torchvision, timm and torchreid models expect ``[0, 1]`` pixels normalised with the ImageNet mean and
std; fast-reid models expect raw ``0-255`` pixels and normalise inside (``PIXEL_MEAN`` / ``PIXEL_STD``
in their config). Feeding one the other's input is silent double (or missing) normalisation.

Example:
    >>> PixelContract(255).normalisation()  # raw 0-255 pixels, as fast-reid models take them
    ([0.0, 0.0, 0.0], [0.00392156862745098, 0.00392156862745098, 0.00392156862745098])
    >>> PixelContract().normalisation()[0]
    [0.485, 0.456, 0.406]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import DataError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class PixelContract:
    """What a model takes: ``(pixel * range - mean) / std`` per channel, ``pixel`` in ``[0, 1]``.

    Attributes:
        range: 1 for ``[0, 1]`` pixels, 255 for ``0-255`` ones.
        mean, std: per-channel, in the units of ``range`` (default: ImageNet's for range 1; none,
            i.e. 0 and 1, for range 255).
    """

    range: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.range not in (1, 255):
            raise DataError(f"--pixel-range must be 1 or 255, not {self.range:g}")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and (len(values) != 3 or not all(math.isfinite(v) for v in values)):
                raise DataError(f"--pixel-{name} needs three finite numbers R,G,B, not {values}")
        if self.std is not None and min(self.std) <= 0:
            raise DataError(f"--pixel-std must be positive, not {list(self.std)}")

    @property
    def default(self) -> bool:
        return self == PixelContract()

    def normalisation(self) -> tuple[list[float], list[float]]:
        """The same contract as mean and std of ``[0, 1]`` pixels (what the datasets apply)."""
        imagenet = self.range == 1
        mean = self.mean if self.mean is not None else (IMAGENET_MEAN if imagenet else [0.0] * 3)
        std = self.std if self.std is not None else (IMAGENET_STD if imagenet else [1.0] * 3)
        return [m / self.range for m in mean], [s / self.range for s in std]


def parse_channels(text: str | None) -> tuple[float, ...] | None:
    """``"123.675,116.28,103.53"`` -> a tuple of three floats (None stays None).

    Raises:
        DataError: not three numbers.
    """
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise DataError(f"'{text}' must be three numbers R,G,B, e.g. 123.675,116.28,103.53") from None
    if len(values) != 3:
        raise DataError(f"'{text}' must be three numbers R,G,B, e.g. 123.675,116.28,103.53")
    return values
