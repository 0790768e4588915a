"""Retrieval metrics: mAP, CMC / Recall@K and mINP (mINP: Ye et al., TPAMI 2021), symmetric or
asymmetric, chunked over queries.

Protocols:
    ``class``: the query itself is removed from the gallery (leave-one-out on one set);
        with separate query and gallery sets nothing is removed.
    ``reid``: gallery items with the query's identity *and* camera are removed.
Queries with no valid match are skipped, as the benchmarks do.

Example:
    >>> import torch
    >>> q = torch.tensor([[1.0, 0.0]]); g = torch.tensor([[1.0, 0.1], [0.0, 1.0]])
    >>> evaluate(q, torch.tensor([0]), g, torch.tensor([1, 0]))["mAP"]
    0.5
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def evaluate(query: torch.Tensor, query_pids: torch.Tensor, gallery: torch.Tensor,
             gallery_pids: torch.Tensor, query_cams: torch.Tensor | None = None,
             gallery_cams: torch.Tensor | None = None, protocol: str = "class",
             same_set: bool = False, ranks: tuple[int, ...] = (1, 5, 10),
             chunk: int = 1024, rerank: bool = False) -> dict[str, float]:
    """Rank the gallery by cosine similarity (or by k-reciprocal re-ranked distance) for every query
    and score it.

    Args:
        query, gallery: (N, D) and (M, D) embeddings (need not be normalised).
        query_pids, gallery_pids: identities.
        query_cams, gallery_cams: cameras (``reid`` protocol).
        protocol: ``"class"`` or ``"reid"``.
        same_set: query i is gallery i (leave-one-out); removes the query itself.
        ranks: CMC ranks to report (``R@k``).
        chunk: queries per similarity block (bounds memory at chunk x M).
        rerank: rank by k-reciprocal re-ranking (:mod:`capdist.measure.rerank`, k1=20, k2=6,
            lambda=0.3) instead of cosine similarity.

    Returns:
        ``mAP``, ``R@k`` for each rank, ``mINP`` (fractions in [0, 1]) and ``queries``
        (how many had a valid match).
    """
    if protocol not in ("class", "reid"):
        raise ValueError(f"unknown protocol '{protocol}' (class or reid)")
    q = F.normalize(query.float(), dim=1)
    g = F.normalize(gallery.float(), dim=1)
    gp = gallery_pids.long()
    qp = query_pids.long()
    qc = query_cams.long() if query_cams is not None else torch.zeros_like(qp)
    gc = gallery_cams.long() if gallery_cams is not None else torch.zeros_like(gp)
    ap_sum, inp_sum, valid = 0.0, 0.0, 0
    cmc = torch.zeros(max(ranks))
    if rerank:
        from .rerank import reranked_distance

        distance = reranked_distance(q, None if same_set else g, chunk=chunk)
    for start in range(0, len(q), chunk):
        sim = -distance(start, min(start + chunk, len(q))) if rerank else q[start:start + chunk] @ g.T
        rows = torch.arange(start, min(start + chunk, len(q)))
        removed = torch.zeros_like(sim, dtype=torch.bool)
        if same_set:
            removed[torch.arange(len(rows)), rows] = True
        if protocol == "reid":
            removed |= (qp[rows].view(-1, 1) == gp.view(1, -1)) & (qc[rows].view(-1, 1) == gc.view(1, -1))
        sim = sim.masked_fill(removed, float("-inf"))
        order = sim.argsort(dim=1, descending=True, stable=True)
        matches = (gp[order] == qp[rows].view(-1, 1)) & ~removed.gather(1, order)
        for row in matches:
            hits = torch.nonzero(row).flatten()
            if hits.numel() == 0:
                continue
            valid += 1
            positions = hits.float() + 1.0
            ap_sum += float((torch.arange(1, len(hits) + 1, dtype=torch.float32) / positions).mean())
            inp_sum += len(hits) / float(positions[-1])
            first = int(hits[0])
            if first < len(cmc):
                cmc[first:] += 1
    if valid == 0:
        raise ValueError("no query has a valid match in the gallery")
    result = {"mAP": ap_sum / valid, "mINP": inp_sum / valid, "queries": valid}
    for k in ranks:
        result[f"R@{k}"] = float(cmc[k - 1]) / valid
    return result
