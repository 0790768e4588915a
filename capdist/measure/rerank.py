"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), as torchreid's ``rerank`` and fast-reid's ``TEST.RERANK`` apply it, with memory
bounded by the number of items times a few dozen neighbours instead of its square.

Every item (queries and gallery together) is encoded as a sparse vector over its expanded k-reciprocal
neighbours, weighted by ``exp(-distance)``, averaged over its ``k2`` nearest neighbours (local query
expansion); the final distance of a query and a gallery item is ``(1 - lambda) * Jaccard + lambda *
original``, the original distance being the squared Euclidean distance of the L2-normalised embeddings
divided by the largest distance of the row's item.

Example:
    >>> import torch
    >>> x = torch.nn.functional.normalize(torch.randn(30, 8), dim=1)
    >>> reranked_distance(x[:5], x[5:], k1=4, k2=2)(0, 5).shape
    torch.Size([5, 25])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

JACCARD_ROWS = 128  # queries per piece of the shared-neighbour sums
PAIRS = 65_536  # item pairs per piece of the encoding's distances


def _neighbours(x: torch.Tensor, k: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest items of every item (itself first) and each item's largest distance."""
    ranks, col_max = [], torch.zeros(len(x))
    for start in range(0, len(x), chunk):
        dist = (2 - 2 * x[start:start + chunk] @ x.T).clamp_min(0)
        col_max = torch.maximum(col_max, dist.amax(0))
        ranks.append(dist.topk(min(k, len(x)), dim=1, largest=False).indices)
    return torch.cat(ranks), col_max.clamp_min(1e-12)


def _reciprocal(rank: torch.Tensor, k: int) -> list[torch.Tensor]:
    """For every item, the items among its ``k + 1`` nearest that count it among theirs."""
    forward = rank[:, :k + 1]
    backward = forward[forward]  # (N, k + 1, k + 1)
    mutual = (backward == torch.arange(len(rank)).view(-1, 1, 1)).any(2)
    return [forward[i][mutual[i]] for i in range(len(rank))]


def _encode(x: torch.Tensor, rank: torch.Tensor, col_max: torch.Tensor, k1: int) -> torch.Tensor:
    """The sparse (N, N) k-reciprocal encoding, each row summing to 1."""
    full, half = _reciprocal(rank, k1), _reciprocal(rank, round(k1 / 2))
    rows, cols = [], []
    for i, base in enumerate(full):
        members = set(base.tolist())
        expanded = [base]
        for c in base.tolist():
            candidate = half[c]
            if len(set(candidate.tolist()) & members) > 2 / 3 * len(candidate):
                expanded.append(candidate)
        idx = torch.unique(torch.cat(expanded))
        rows.append(torch.full_like(idx, i))
        cols.append(idx)
    rows, cols = torch.cat(rows), torch.cat(cols)
    dots = torch.cat([(x[rows[a:a + PAIRS]] * x[cols[a:a + PAIRS]]).sum(1) for a in range(0, len(rows), PAIRS)])
    dist = (2 - 2 * dots).clamp_min(0) / col_max[rows]
    weight = torch.exp(-dist)
    weight = weight / torch.zeros(len(x)).index_add_(0, rows, weight)[rows]
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), weight, (len(x), len(x)),
                                   check_invariants=False).coalesce()


def reranked_distance(query: torch.Tensor, gallery: torch.Tensor | None = None, k1: int = 20, k2: int = 6,
                      lambda_value: float = 0.3, chunk: int = 1024) -> Callable[[int, int], torch.Tensor]:
    """A function giving the re-ranked distances of queries ``start:end`` to the whole gallery.

    Args:
        query: (Q, D) embeddings.
        gallery: (G, D) embeddings; None when the queries are the gallery (leave-one-out).
        k1, k2: neighbourhood of the k-reciprocal sets and of the query expansion (paper: 20, 6).
        lambda_value: weight of the original distance (paper: 0.3).
        chunk: rows per distance block (bounds memory at chunk x (Q + G)).
    """
    q = F.normalize(query.float(), dim=1)
    x = q if gallery is None else torch.cat([q, F.normalize(gallery.float(), dim=1)])
    offset = 0 if gallery is None else len(q)
    rank, col_max = _neighbours(x, k1 + 1, chunk)
    v = _encode(x, rank, col_max, k1)
    if k2 > 1:  # local query expansion: the mean encoding of each item's k2 nearest
        expand = torch.sparse_coo_tensor(
            torch.stack([torch.arange(len(x)).repeat_interleave(k2), rank[:, :k2].reshape(-1)]),
            torch.full((len(x) * k2,), 1.0 / k2), (len(x), len(x)), check_invariants=False)
        v = torch.sparse.mm(expand, v).coalesce()
    by_column = v.t().coalesce()  # sorted by column k: the items holding k, with their weights
    columns, members = by_column.indices()
    weights = by_column.values()
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(columns, minlength=len(x)).cumsum(0)])
    gallery_slice = slice(offset, len(x))

    def jaccard_rows(start: int, end: int) -> torch.Tensor:
        rows = v.index_select(0, torch.arange(start, end)).coalesce()
        qi, k = rows.indices()
        qv = rows.values()
        counts = ptr[k + 1] - ptr[k]
        owner = torch.repeat_interleave(torch.arange(len(k)), counts)
        pos = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        entry = ptr[k][owner] + pos
        shared = torch.zeros(end - start, len(x)).index_put_(
            (qi[owner], members[entry]), torch.minimum(qv[owner], weights[entry]), accumulate=True)
        return 1 - shared[:, gallery_slice] / (2 - shared[:, gallery_slice])

    def block(start: int, end: int) -> torch.Tensor:
        # the shared-neighbour sums in pieces of JACCARD_ROWS queries: their index arrays are the peak
        jaccard = torch.cat([jaccard_rows(a, min(a + JACCARD_ROWS, end)) for a in range(start, end, JACCARD_ROWS)])
        original = (2 - 2 * x[start:end] @ x[gallery_slice].T).clamp_min(0) / col_max[start:end].view(-1, 1)
        return (1 - lambda_value) * jaccard + lambda_value * original

    return block
