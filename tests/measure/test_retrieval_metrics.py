"""mAP, CMC and mINP on a hand-worked 5-query / 8-gallery example."""

import pytest
import torch

from capdist.measure.retrieval_metrics import evaluate

GALLERY_PIDS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
QUERY_PIDS = torch.tensor([0, 1, 2, 3, 4])
RANKINGS = [  # gallery indices, best first
    [0, 2, 1, 3, 4, 5, 6, 7],
    [0, 1, 4, 2, 5, 6, 3, 7],
    [4, 5, 0, 1, 2, 3, 6, 7],
    [0, 1, 2, 4, 5, 6, 7, 3],
    [0, 1, 2, 3, 4, 5, 6, 7],
]


def _embeddings():
    # gallery item j is the unit vector e_j; a query's cosine to e_j is its score for j
    gallery = torch.eye(8)
    query = torch.zeros(5, 8)
    for i, order in enumerate(RANKINGS):
        for pos, j in enumerate(order):
            query[i, j] = 8 - pos
    return query, gallery


def test_class_protocol_by_hand():
    q, g = _embeddings()
    r = evaluate(q, QUERY_PIDS, g, GALLERY_PIDS)
    # query 4 has no match and is skipped; hits: q0 at 1,3; q1 at 4,7; q2 at 1,2; q3 at 6,7
    aps = [(1 + 2 / 3) / 2, (1 / 4 + 2 / 7) / 2, 1.0, (1 / 6 + 2 / 7) / 2]
    inps = [2 / 3, 2 / 7, 1.0, 2 / 7]
    assert r["queries"] == 4
    assert r["mAP"] == pytest.approx(sum(aps) / 4)
    assert r["mINP"] == pytest.approx(sum(inps) / 4)
    assert (r["R@1"], r["R@5"], r["R@10"]) == (0.5, 0.75, 1.0)


def test_reid_protocol_removes_same_id_same_camera():
    q, g = _embeddings()
    qcams = torch.tensor([0, 1, 1, 1, 1])
    gcams = torch.tensor([0, 1, 0, 0, 0, 0, 0, 0])
    r = evaluate(q, QUERY_PIDS, g, GALLERY_PIDS, qcams, gcams, protocol="reid")
    # q0 loses g0 (same id, same camera): its hits move to ranks 1 -> g2 is rank 1 (a miss), g1 rank 2
    aps = [1 / 2, (1 / 4 + 2 / 7) / 2, 1.0, (1 / 6 + 2 / 7) / 2]
    inps = [1 / 2, 2 / 7, 1.0, 2 / 7]
    assert r["mAP"] == pytest.approx(sum(aps) / 4)
    assert r["mINP"] == pytest.approx(sum(inps) / 4)
    assert (r["R@1"], r["R@5"], r["R@10"]) == (0.25, 0.75, 1.0)


def test_leave_one_out_removes_the_query_itself():
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    pids = torch.tensor([0, 0, 1, 1])
    r = evaluate(x, pids, x, pids, same_set=True)
    assert r["mAP"] == 1.0 and r["R@1"] == 1.0


def test_chunking_does_not_change_results():
    gen = torch.Generator().manual_seed(0)
    q, g = torch.randn(50, 6, generator=gen), torch.randn(70, 6, generator=gen)
    qp, gp = torch.randint(0, 5, (50,), generator=gen), torch.randint(0, 5, (70,), generator=gen)
    assert evaluate(q, qp, g, gp, chunk=7) == evaluate(q, qp, g, gp, chunk=1000)
