"""Retrieval-embedding distillation for asymmetric retrieval: embedding MSE and cosine, CSD
(Wu et al., CVPR 2023), RAML (Suma & Tolias, WACV 2023), ROP (Xie et al., ICLR 2023), D3still
(Xie et al., CVPR 2024) and the cross-model contrastive term of asymmetric metric learning
(Budnik & Avrithis, CVPR 2021). The teacher's embeddings of the batch act as the gallery.

Example:
    >>> import torch
    >>> e = torch.randn(6, 8)
    >>> float(embedding_cosine_loss(e, e)) < 1e-6
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def embedding_mse_loss(e_s: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
    """Mean squared error between student and teacher embeddings."""
    return F.mse_loss(e_s, e_t.detach())


def embedding_cosine_loss(e_s: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
    """``1 - cos(e_s, e_t)`` averaged over the batch."""
    return (1 - F.cosine_similarity(e_s, e_t.detach(), dim=1)).mean()


def cross_contrastive_loss(e_s: torch.Tensor, e_t: torch.Tensor, temperature: float = 0.05,
                           labels: torch.Tensor | None = None, positives: str = "self") -> torch.Tensor:
    """InfoNCE against the teacher's batch embeddings, inspired by asymmetric metric learning
    (Budnik & Avrithis, CVPR 2021, who mine label-defined positives and negatives): each student
    embedding, as a query against the teacher's embeddings of the batch, must retrieve its own
    image's (softmax over cosine similarities / ``temperature``).

    Args:
        e_s, e_t: (B, D) student and teacher embeddings (the teacher side gets no gradient).
        temperature: softmax temperature.
        labels: (B,) identities; with them, other images of the query's identity are not negatives.
        positives: ``"self"`` (the image's own teacher embedding) or ``"label"`` (every teacher
            embedding of its identity, multi-positive InfoNCE; needs ``labels``).
    """
    s = F.normalize(e_s, dim=1)
    t = F.normalize(e_t.detach(), dim=1)
    logits = s @ t.T / temperature
    own = torch.eye(len(s), dtype=torch.bool, device=s.device)
    if labels is None:
        return F.cross_entropy(logits, torch.arange(len(s), device=s.device))
    same = labels[:, None] == labels[None, :]
    positive = same if positives == "label" else own
    logits = logits.masked_fill(same & ~positive, float("-inf"))
    return (torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~positive, float("-inf")), 1)).mean()


def _ranked(e_s: torch.Tensor, e_t: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-gallery similarities sorted by the teacher (B x k) and the student's at the same items."""
    s = F.normalize(e_s, dim=1)
    t = F.normalize(e_t.detach(), dim=1)
    t_sim = t @ t.T
    values, order = t_sim.sort(dim=1, descending=True)
    return (s @ t.T).gather(1, order[:, :k]), values[:, :k]


def csd_loss(e_s: torch.Tensor, e_t: torch.Tensor, k: int = 10, t_query: float = 0.1,
             t_gallery: float = 0.1) -> torch.Tensor:
    """Contextual similarity distillation: KL between softmaxes over the teacher's top-k gallery."""
    s, t = _ranked(e_s, e_t, min(k, len(e_s)))
    return F.kl_div(F.log_softmax(s / t_query, 1), F.softmax(t / t_gallery, 1), reduction="batchmean")


def raml_loss(e_s: torch.Tensor, e_t: torch.Tensor, lam_cross: float = 0.7482, lam_self: float = 0.6778
              ) -> torch.Tensor:
    """RAML's second-order loss: embedding regression + cross (student-teacher) and self
    (student-student) similarity matching to the teacher's similarities."""
    s = F.normalize(e_s, dim=1)
    t = F.normalize(e_t.detach(), dim=1)
    t_sim = t @ t.T
    loss = (s - t).pow(2).sum(1).mean()
    loss = loss + lam_cross * F.mse_loss(s @ t.T, t_sim)
    return loss + lam_self * F.mse_loss(s @ s.T, t_sim)


def rop_loss(e_s: torch.Tensor, e_t: torch.Tensor, k: int = 10, temperature: float = 0.01,
             rank_weight: float = 1.0) -> torch.Tensor:
    """Rank order preservation: sigmoid pairwise-order indicators of the student's similarities to
    the teacher's top-k gallery must match the teacher's, weighted by rank."""
    k = min(k, len(e_s))
    s, t = _ranked(e_s, e_t, k)
    diff_t = t.unsqueeze(1) - t.unsqueeze(2)  # [b, i, j] = t_j - t_i
    ind_t = (diff_t > 0).to(s.dtype) + 0.5 * (diff_t == 0).to(s.dtype)
    ind_s = torch.sigmoid((s.unsqueeze(1) - t.unsqueeze(2)) / temperature)  # [b, i, j] = s_j - t_i
    weights = F.softmax(t * rank_weight, dim=1) * torch.arange(1, k + 1, device=s.device, dtype=s.dtype)
    return ((ind_t - ind_s).pow(2) * weights.unsqueeze(-1)).sum((1, 2)).mean() / k


def d3still_loss(e_s: torch.Tensor, e_t: torch.Tensor, k: int = 10, alpha: float = 100.0, beta: float = 5.0,
                 gamma: float = 1.0) -> torch.Tensor:
    """Decoupled differential distillation: the top-1 similarity matched directly (alpha), and the
    pairwise differences of the next k-1 similarities matched relative to the teacher's,
    split into pairs ordered the wrong way (hard, beta) and the right way (simple, gamma)."""
    b = e_s.shape[0]
    k = min(k, b)
    s, t = _ranked(e_s, e_t, k)
    top = alpha * torch.linalg.vector_norm(t[:, 0] - s[:, 0]) / b
    if k < 3:
        return top
    ds = (s[:, 1:].unsqueeze(1) - s[:, 1:].unsqueeze(2)).flatten(1)
    dt = (t[:, 1:].unsqueeze(1) - t[:, 1:].unsqueeze(2)).flatten(1)
    dt = torch.where(dt == 0, torch.ones_like(dt), dt)
    agree = (ds / dt).detach()
    rel = (ds - dt) / (0.1 + dt.abs())
    hard = torch.linalg.vector_norm(rel * (agree < 0), dim=1).mean() / (k - 1)
    simple = torch.linalg.vector_norm(rel * (agree > 0), dim=1).mean() / (k - 1)
    return top + beta * hard + gamma * simple
