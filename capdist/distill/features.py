"""Feature distillation: FitNet (Romero et al., ICLR 2015), AT (Zagoruyko & Komodakis, ICLR 2017),
ReviewKD (Chen et al., CVPR 2021: attention-based fusion + hierarchical context loss) and CDD's
per-block pooled-feature loss (Xie et al., CVPR 2023).

Example:
    >>> import torch
    >>> f = torch.randn(2, 4, 8, 8)
    >>> float(at_loss(f, f)), float(hcl_loss(f, f))
    (0.0, 0.0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fitnet_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the (regressed) student feature and the teacher's."""
    return F.mse_loss(f_s, f_t.detach())


def attention_map(f: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Spatial attention: channel mean of ``|f|^p``, flattened and L2-normalised."""
    return F.normalize(f.abs().pow(p).mean(1).flatten(1), dim=1)


def at_loss(f_s: torch.Tensor, f_t: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Mean squared difference of attention maps (spatial sizes pooled to the smaller)."""
    if f_s.shape[2:] != f_t.shape[2:]:
        size = tuple(min(a, b) for a, b in zip(f_s.shape[2:], f_t.shape[2:], strict=True))
        f_s, f_t = F.adaptive_avg_pool2d(f_s, size), F.adaptive_avg_pool2d(f_t, size)
    return (attention_map(f_s, p) - attention_map(f_t.detach(), p)).pow(2).mean()


def hcl_loss(f_s: torch.Tensor, f_t: torch.Tensor, levels: tuple[int, ...] = (4, 2, 1)) -> torch.Tensor:
    """ReviewKD's hierarchical context loss: MSE at full size and on a pooled pyramid,
    each coarser level weighted half as much, normalised by the total weight."""
    f_t = f_t.detach()
    loss, weight, total = F.mse_loss(f_s, f_t), 1.0, 1.0
    for level in levels:
        if level >= f_s.shape[2]:
            continue
        weight /= 2.0
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(f_s, level), F.adaptive_avg_pool2d(f_t, level))
        total += weight
    return loss / total


def pool_features(t: torch.Tensor) -> torch.Tensor:
    """Global average pool: (B, C, H, W) or token (B, N, C) features to (B, C); (B, C) stays."""
    return t.mean((2, 3)) if t.dim() == 4 else t.reshape(t.shape[0], -1, t.shape[-1]).mean(1) if t.dim() == 3 else t


def block_feature_loss(feats_s: list[torch.Tensor], feats_t: list[torch.Tensor]) -> torch.Tensor:
    """CDD's block loss as the authors' code computes it (``Fitnet_loss`` in ``MSMT/loss/kl_loss.py``):
    for every block, the *unsquared* L2 distance between the globally pooled student and teacher
    features of each sample, averaged over the batch, *summed* over blocks.

    Example:
        >>> s, t = [torch.zeros(2, 3, 4, 4)], [torch.ones(2, 3, 4, 4)]
        >>> round(float(block_feature_loss(s, t)), 4)  # sqrt(3) per sample
        1.7321
    """
    terms = [(pool_features(s) - pool_features(t).detach()).norm(dim=1).mean()
             for s, t in zip(feats_s, feats_t, strict=True)]
    return torch.stack(terms).sum()


def pooled_feature_loss(feats_s: list[torch.Tensor], feats_t: list[torch.Tensor]) -> torch.Tensor:
    """Stage-level variant: mean over stages of the MSE between global-average-pooled features."""
    terms = [F.mse_loss(s.mean((2, 3)) if s.dim() == 4 else s, (t.mean((2, 3)) if t.dim() == 4 else t).detach())
             for s, t in zip(feats_s, feats_t, strict=True)]
    return torch.stack(terms).mean()


class ABF(nn.Module):
    """ReviewKD's attention-based fusion: a student feature fused with the deeper, already
    fused one through two spatial attention maps.

    Args:
        c_in: student channels at this level.
        c_mid: fusion width.
        c_out: teacher channels at this level.
        fuse: whether a deeper feature is fused in.
    """

    def __init__(self, c_in: int, c_mid: int, c_out: int, fuse: bool) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(c_in, c_mid, 1, bias=False), nn.BatchNorm2d(c_mid))
        self.expand = nn.Sequential(nn.Conv2d(c_mid, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))
        self.attention = nn.Sequential(nn.Conv2d(2 * c_mid, 2, 1), nn.Sigmoid()) if fuse else None

    def forward(self, x: torch.Tensor, deeper: torch.Tensor | None = None):
        x = self.reduce(x)
        if self.attention is not None and deeper is not None:
            deeper = F.interpolate(deeper, size=x.shape[2:], mode="nearest")
            z = self.attention(torch.cat([x, deeper], 1))
            x = x * z[:, :1] + deeper * z[:, 1:]
        return self.expand(x), x


class ReviewFusion(nn.Module):
    """ReviewKD's review path over student features ordered shallow to deep.

    Args:
        student_channels: channels of each student feature.
        teacher_channels: channels of each matching teacher feature.
        mid: fusion width.
    """

    def __init__(self, student_channels: list[int], teacher_channels: list[int], mid: int = 64) -> None:
        super().__init__()
        n = len(student_channels)
        self.abfs = nn.ModuleList(ABF(s, mid, t, fuse=i < n - 1)
                                  for i, (s, t) in enumerate(zip(student_channels, teacher_channels, strict=True)))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out: list[torch.Tensor] = [None] * len(feats)
        deeper = None
        for i in range(len(feats) - 1, -1, -1):
            out[i], deeper = self.abfs[i](feats[i], deeper)
        return out


def reviewkd_loss(fused_s: list[torch.Tensor], feats_t: list[torch.Tensor]) -> torch.Tensor:
    """Sum over levels of the hierarchical context loss between fused student and teacher features."""
    return sum(hcl_loss(s, t) for s, t in zip(fused_s, feats_t, strict=True))
