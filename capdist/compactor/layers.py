"""Compactor layers: identity-initialised 1x1 maps whose rows are pruned (ResRep, ICCV 2021).

A compactor follows the BatchNorm after a producer layer (or the producer itself
when no norm follows), before the activation, so a row driven to zero makes its
channel reach every consumer as exactly zero. Three kinds:

* :class:`Compactor` -- a dense 1x1 convolution C -> C, folded into a dense conv.
* :class:`DiagonalCompactor` -- a per-channel scale (a 1x1 depthwise conv) for
  channels produced by a depthwise or grouped conv, where a full matrix could
  not be folded into the kernel.
* :class:`LinearCompactor` -- a C -> C linear map on the last dimension, for the
  hidden channels of an MLP (ConvNeXt, ViT, Swin), folded into the Linear.

Each is a subclass of the layer type torch-pruning understands, carries a
``mask`` buffer (True = kept) and exposes ``row_sq_norms()``.

Example:
    >>> import torch
    >>> c = Compactor(4)
    >>> torch.equal(c(torch.ones(1, 4, 2, 2)), torch.ones(1, 4, 2, 2))
    True
"""

from __future__ import annotations

import torch
from torch import nn

ANCHOR_ATTR = "compactor"


class Compactor(nn.Conv2d):
    """Dense 1x1 compactor, identity-initialised, no bias.

    Args:
        channels: number of channels C of the map C -> C.
    """

    kind = "dense"

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, kernel_size=1, bias=False)
        with torch.no_grad():
            self.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
        self.register_buffer("mask", torch.ones(channels, dtype=torch.bool))

    def matrix(self) -> torch.Tensor:
        """The map as a C x C matrix (row j produces output channel j)."""
        return self.weight.view(self.out_channels, -1)

    def row_sq_norms(self) -> torch.Tensor:
        """Squared L2 norm of every row."""
        return self.weight.pow(2).flatten(1).sum(1)


class DiagonalCompactor(nn.Conv2d):
    """Per-channel scale compactor (a 1x1 depthwise conv), identity-initialised.

    Args:
        channels: number of channels C.
    """

    kind = "diagonal"

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, kernel_size=1, groups=channels, bias=False)
        with torch.no_grad():
            self.weight.fill_(1.0)
        self.register_buffer("mask", torch.ones(channels, dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)

    def matrix(self) -> torch.Tensor:
        """The map as a C x C (diagonal) matrix."""
        return torch.diag(self.weight.view(-1))

    def row_sq_norms(self) -> torch.Tensor:
        """Squared L2 norm of every row (the square of each scale)."""
        return self.weight.pow(2).view(-1)


class LinearCompactor(nn.Linear):
    """Linear compactor on the last dimension, identity-initialised, no bias.

    Args:
        channels: number of features C.
    """

    kind = "linear"

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, bias=False)
        with torch.no_grad():
            self.weight.copy_(torch.eye(channels))
        self.register_buffer("mask", torch.ones(channels, dtype=torch.bool))

    def matrix(self) -> torch.Tensor:
        """The map as a C x C matrix."""
        return self.weight

    def row_sq_norms(self) -> torch.Tensor:
        """Squared L2 norm of every row."""
        return self.weight.pow(2).sum(1)


AnyCompactor = Compactor | DiagonalCompactor | LinearCompactor
COMPACTOR_TYPES = (Compactor, DiagonalCompactor, LinearCompactor)


def _apply_compactor(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    out = getattr(module, ANCHOR_ATTR)(output)
    return out.contiguous() if isinstance(out, torch.Tensor) else out


def install(anchor: nn.Module, compactor: nn.Module) -> None:
    """Register ``compactor`` as a child of ``anchor`` and apply it to anchor's output.

    The anchor keeps its state-dict keys; the compactor adds ``<anchor>.compactor.*``.
    """
    anchor.add_module(ANCHOR_ATTR, compactor)
    anchor.register_forward_hook(_apply_compactor)


def uninstall(anchor: nn.Module) -> None:
    """Remove the compactor child and its hook from ``anchor``."""
    for key, hook in list(anchor._forward_hooks.items()):
        if hook is _apply_compactor:
            del anchor._forward_hooks[key]
    if ANCHOR_ATTR in anchor._modules:
        del anchor._modules[ANCHOR_ATTR]


def compactor_of(anchor: nn.Module) -> nn.Module | None:
    """The compactor installed on ``anchor``, or None."""
    return anchor._modules.get(ANCHOR_ATTR)
