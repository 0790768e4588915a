"""Relation distillation: RKD (Park et al., CVPR 2019), PKT (Passalis & Tefas, ECCV 2018),
SP (Tung & Mori, ICCV 2019) and CC (Peng et al., ICCV 2019).

Example:
    >>> import torch
    >>> e = torch.randn(6, 8)
    >>> float(rkd_distance_loss(2 * e, e)) < 1e-6
    True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _pdist(e: torch.Tensor) -> torch.Tensor:
    d = (e.unsqueeze(1) - e.unsqueeze(0)).pow(2).sum(-1).clamp_min(1e-12).sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))


def rkd_distance_loss(e_s: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
    """Huber loss between pairwise distances, each normalised by its mean (scale invariant)."""
    with torch.no_grad():
        d_t = _pdist(e_t.detach())
        d_t = d_t / d_t[d_t > 0].mean()
    d_s = _pdist(e_s)
    d_s = d_s / d_s[d_s > 0].mean()
    return F.smooth_l1_loss(d_s, d_t)


def _angles(e: torch.Tensor) -> torch.Tensor:
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()


def rkd_angle_loss(e_s: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
    """Huber loss between the cosines of the angles formed by every triplet."""
    with torch.no_grad():
        a_t = _angles(e_t.detach())
    return F.smooth_l1_loss(_angles(e_s), a_t)


def pkt_loss(e_s: torch.Tensor, e_t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """KL between conditional probabilities built from cosine similarities."""
    def probs(e):
        e = F.normalize(e, dim=1)
        sim = (e @ e.T + 1.0) / 2.0
        return sim / sim.sum(1, keepdim=True)

    p_s, p_t = probs(e_s), probs(e_t.detach())
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).sum(1).mean()


def sp_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Similarity preserving: ``||norm(G_s) - norm(G_t)||_F^2 / B^2`` on batch Gram matrices."""
    b = f_s.shape[0]
    g_s = F.normalize(f_s.flatten(1) @ f_s.flatten(1).T, dim=1)
    g_t = F.normalize(f_t.detach().flatten(1) @ f_t.detach().flatten(1).T, dim=1)
    return (g_s - g_t).pow(2).sum() / (b * b)


def _correlation(e: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    e = F.normalize(e, dim=1)
    sim = e @ e.T
    corr = torch.zeros_like(sim)
    for p in range(order + 1):
        corr = corr + math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * sim.pow(p)
    return corr


def cc_loss(e_s: torch.Tensor, e_t: torch.Tensor, gamma: float = 0.4, order: int = 2) -> torch.Tensor:
    """Correlation congruence: MSE between Gaussian-kernel correlation matrices (Taylor order ``order``)."""
    b = e_s.shape[0]
    return (_correlation(e_s, gamma, order) - _correlation(e_t.detach(), gamma, order)).pow(2).sum() / (b * b)
