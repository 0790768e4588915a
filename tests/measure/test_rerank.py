"""k-reciprocal re-ranking against torchreid's implementation of the paper, and its chunking."""

import pytest
import torch

from capdist.measure.rerank import reranked_distance
from capdist.measure.retrieval_metrics import evaluate


def _clusters(n=120, dim=16, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    pids = torch.arange(n) % classes
    x = torch.randn(classes, dim, generator=g)[pids] + torch.randn(n, dim, generator=g)
    return torch.nn.functional.normalize(x, dim=1), pids


def test_matches_torchreids_re_ranking():
    rerank = pytest.importorskip("torchreid.reid.utils.rerank", reason="torchreid not installed")
    x, _ = _clusters()
    q, g = x[:30], x[30:]

    def dist(a, b):  # torchreid squares the distances it is given
        return (2 - 2 * a @ b.T).clamp_min(0).sqrt().numpy()

    theirs = torch.from_numpy(rerank.re_ranking(dist(q, g), dist(q, q), dist(g, g), k1=20, k2=6, lambda_value=0.3))
    assert torch.allclose(reranked_distance(q, g)(0, 30), theirs, atol=1e-5)


def test_blocks_do_not_depend_on_the_chunk_and_leave_one_out_is_the_shared_set():
    x, _ = _clusters(n=90)
    whole = reranked_distance(x[:20], x[20:])(0, 20)
    small = reranked_distance(x[:20], x[20:], chunk=7)
    assert torch.allclose(torch.cat([small(0, 7), small(7, 20)]), whole, atol=1e-6)
    shared = reranked_distance(x)(0, 90)
    assert shared.shape == (90, 90)
    assert torch.allclose(shared.diagonal(), torch.zeros(90), atol=1e-6)  # each item is its own nearest


def test_re_ranking_raises_map_on_clustered_data():
    x, pids = _clusters(n=600, dim=32, classes=12)
    plain = evaluate(x[:100], pids[:100], x[100:], pids[100:])
    reranked = evaluate(x[:100], pids[:100], x[100:], pids[100:], rerank=True)
    assert reranked["mAP"] > plain["mAP"] + 0.05
