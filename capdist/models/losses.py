"""Task losses for retrieval training: label-smoothed cross-entropy and batch-hard triplet
(the BoT re-ID baseline).

Example:
    >>> import torch
    >>> emb = torch.tensor([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])
    >>> float(batch_hard_triplet(emb, torch.tensor([0, 0, 1, 1]), margin=0.3))
    0.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smoothed_cross_entropy(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Cross-entropy against ``(1 - eps) * onehot + eps / C``."""
    return F.cross_entropy(logits, target, label_smoothing=smoothing)


def batch_hard_triplet(embeddings: torch.Tensor, pids: torch.Tensor, margin: float | None = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017) on Euclidean distances.

    For each anchor: the farthest positive and the closest negative in the batch.
    ``margin=None`` uses the soft margin ``log(1 + exp(d_ap - d_an))``. Anchors without
    a positive or a negative in the batch are ignored.
    """
    dist = torch.cdist(embeddings, embeddings).clamp_min(1e-12)
    same = pids.view(-1, 1) == pids.view(1, -1)
    eye = torch.eye(len(pids), dtype=torch.bool, device=pids.device)
    pos = same & ~eye
    valid = pos.any(1) & (~same).any(1)
    if not valid.any():
        return embeddings.sum() * 0.0
    d_ap = (dist * pos).max(1).values
    d_an = dist.masked_fill(same, float("inf")).min(1).values
    d_ap, d_an = d_ap[valid], d_an[valid]
    if margin is None:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(d_ap - d_an + margin).mean()
