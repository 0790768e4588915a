"""Adapters between student and teacher widths (FitNets' regressor, ICLR 2015).

Built from the shapes actually seen, so they also fit a student after surgery.

Example:
    >>> import torch
    >>> make_adapter(torch.zeros(2, 8, 4, 4), torch.zeros(2, 16, 4, 4))(torch.zeros(2, 8, 4, 4)).shape
    torch.Size([2, 16, 4, 4])
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CapdistError


class ShapeMismatch(CapdistError):
    """Student and teacher tensors that no adapter can match."""


class ConvRegressor(nn.Sequential):
    """1x1 conv + BN mapping C_s channels to C_t (FitNets)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


class LinearProjector(nn.Linear):
    """Linear map D_s -> D_t for embeddings."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__(d_in, d_out, bias=False)


def make_adapter(student: torch.Tensor, teacher: torch.Tensor) -> nn.Module:
    """Identity when shapes agree, else a regressor/projector; error when spatial sizes differ."""
    if student.shape == teacher.shape:
        return nn.Identity()
    if student.dim() == 4 and teacher.dim() == 4:
        if student.shape[2:] != teacher.shape[2:]:
            raise ShapeMismatch(f"student feature {tuple(student.shape)} and teacher feature "
                                f"{tuple(teacher.shape)} differ in spatial size; pick layers at the same stride")
        return ConvRegressor(student.shape[1], teacher.shape[1])
    if student.dim() == 2 and teacher.dim() == 2:
        return LinearProjector(student.shape[1], teacher.shape[1])
    raise ShapeMismatch(f"cannot adapt a student tensor {tuple(student.shape)} to a teacher tensor "
                        f"{tuple(teacher.shape)}")
