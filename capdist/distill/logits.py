"""Logit distillation: KD (Hinton et al., 2015) and DKD (Zhao et al., CVPR 2022).

Example:
    >>> import torch
    >>> z = torch.randn(4, 10)
    >>> float(kd_loss(z, z))
    0.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(logits_s: torch.Tensor, logits_t: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch."""
    log_p_s = F.log_softmax(logits_s / temperature, dim=1)
    p_t = F.softmax(logits_t.detach() / temperature, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * temperature**2


def dkd_loss(logits_s: torch.Tensor, logits_t: torch.Tensor, target: torch.Tensor, alpha: float = 1.0,
             beta: float = 8.0, temperature: float = 4.0) -> torch.Tensor:
    """Decoupled KD: ``alpha * TCKD + beta * NCKD`` (target-class and non-target-class terms)."""
    logits_t = logits_t.detach()
    gt = F.one_hot(target, logits_s.shape[1]).bool()
    p_s = F.softmax(logits_s / temperature, dim=1)
    p_t = F.softmax(logits_t / temperature, dim=1)
    b_s = torch.stack([(p_s * gt).sum(1), (p_s * ~gt).sum(1)], 1).clamp_min(1e-12)
    b_t = torch.stack([(p_t * gt).sum(1), (p_t * ~gt).sum(1)], 1).clamp_min(1e-12)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(1).mean() * temperature**2
    masked_s = F.log_softmax(logits_s / temperature - 1000.0 * gt, dim=1)
    masked_t = F.softmax(logits_t / temperature - 1000.0 * gt, dim=1)
    nckd = F.kl_div(masked_s, masked_t, reduction="batchmean") * temperature**2
    return alpha * tckd + beta * nckd
