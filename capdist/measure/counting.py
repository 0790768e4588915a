"""FLOPs and parameters from fvcore and thop, side by side.

fvcore counts one multiply-add as one FLOP and covers conv, linear, matmul,
einsum, norms, upsampling and adaptive pooling; it does not count activations,
element-wise adds or max pooling. thop counts multiply-adds with its own per-layer
rules (it also counts BatchNorm, pooling and some activations). The two differ
by design on those ops; :func:`count` reports both and flags a disagreement
above 1% so the reader knows which convention a figure uses.

Example:
    >>> import torch, torchvision
    >>> r = count(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64))
    >>> r.params
    11689512
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..compactor.cost import fvcore_counts


@dataclass
class CountReport:
    """Counts for one model at one input size.

    Attributes:
        params: trainable and frozen parameters.
        fvcore_flops: fvcore total (multiply-adds).
        thop_macs: thop total (multiply-adds).
        disagreement: |fvcore - thop| / fvcore.
        flagged: disagreement above 1%.
        uncounted_ops: operators fvcore skipped (what a counter cannot count).
    """

    params: int
    fvcore_flops: int
    thop_macs: int
    disagreement: float
    flagged: bool
    uncounted_ops: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


def fvcore_flops(model: nn.Module, inputs: tuple) -> tuple[int, dict[str, int]]:
    """fvcore total FLOPs in eval mode and the operators it skipped."""
    by_module, skipped = fvcore_counts(model, inputs)
    return int(by_module.get("", 0)), skipped


def thop_macs(model: nn.Module, inputs: tuple) -> int:
    """thop total multiply-adds (on a copy: thop adds buffers to the modules it visits)."""
    from thop import profile

    clone = copy.deepcopy(model).eval()
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        macs, _ = profile(clone, inputs=inputs, verbose=False)
    return int(macs)


def count(model: nn.Module, example_inputs) -> CountReport:
    """Count parameters and FLOPs with fvcore and thop.

    Args:
        model: any module.
        example_inputs: a tensor or tuple of tensors (batch size 1 gives per-image counts).
    """
    inputs = tuple(example_inputs) if isinstance(example_inputs, (list, tuple)) else (example_inputs,)
    flops, skipped = fvcore_flops(model, inputs)
    macs = thop_macs(model, inputs)
    gap = abs(flops - macs) / max(flops, 1)
    return CountReport(params=int(sum(p.numel() for p in model.parameters())),
                       fvcore_flops=flops, thop_macs=macs, disagreement=gap,
                       flagged=gap > 0.01, uncounted_ops=skipped)
