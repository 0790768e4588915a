"""Uniform allocation: every group loses the same fraction, units ranked within their group."""

import numpy as np
import pytest
import torch

from capdist.compactor import CompactorConfig, NormSchedule, RetrievalSchedule, attach
from capdist.compactor.budget import ranking_scores, within_group_ranks
from capdist.testing import TinyResNet


def _compacted(allocation: str, seed: int = 0):
    torch.manual_seed(seed)
    cm = attach(TinyResNet(in_channels=1, width=16), torch.randn(1, 1, 8, 8),
                CompactorConfig(scope="all", allocation=allocation))
    with torch.no_grad():
        for c in cm.compactors():
            c.weight.mul_(torch.rand(c.weight.shape[0]).view(-1, *([1] * (c.weight.dim() - 1))))
    return cm


def _kept_fractions(cm) -> np.ndarray:
    return np.array([float(g.mask.float().mean()) for g in cm.groups])


def test_within_group_ranks_are_rank_over_size():
    assert within_group_ranks(np.array([0.3, 0.1, 0.2, 0.1])).tolist() == [1.0, 0.25, 0.75, 0.5]
    scored = ranking_scores([np.array([5.0, 1.0]), np.array([0.1, 0.2, 0.3, 0.4])], None, uniform=True)
    assert [s.tolist() for s in scored] == [[1.0, 0.5], [0.25, 0.5, 0.75, 1.0]]


def test_uniform_norm_schedule_takes_the_same_fraction_of_every_group_by_norm_within_it():
    cm = _compacted("uniform")
    NormSchedule(cm, target=0.4).update(limit=10**9)
    periods = np.array([g.spec.period for g in cm.groups])
    assert len(set(periods.tolist())) > 1  # groups of different widths, or the check below says nothing
    kept = _kept_fractions(cm)
    assert kept.max() - kept.min() <= 1 / periods.min() + 1e-9
    assert cm.flops() <= 0.4 * cm.original_flops
    for g in cm.groups:
        norms = g.row_norms()
        if (~g.mask).any():
            assert norms[~g.mask].max() <= norms[g.mask].min()


def test_global_allocation_spreads_the_reduction_unevenly_on_the_same_norms():
    cm = _compacted("global")
    NormSchedule(cm, target=0.4).update(limit=10**9)
    periods = np.array([g.spec.period for g in cm.groups])
    kept = _kept_fractions(cm)
    assert kept.max() - kept.min() > 1 / periods.min()


def test_uniform_top_up_evens_out_groups_retrieval_guidance_already_cut():
    cm = _compacted("uniform")
    first = cm.groups[0]
    half = torch.ones(first.spec.period, dtype=torch.bool)
    half[: first.spec.period // 2] = False
    first.set_mask(first.units_to_mask(half))
    sched = RetrievalSchedule(cm, target=0.5, k=2, ratio=0.5)
    sched.top_up()
    assert cm.flops() <= 0.5 * cm.original_flops
    assert not first.kept_units()[: first.spec.period // 2].any()  # masks only grow
    kept = _kept_fractions(cm)
    periods = np.array([g.spec.period for g in cm.groups])
    others = np.delete(kept, 0)
    assert others.max() - others.min() <= 1 / periods.min() + 1e-9
    assert kept[0] == 0.5 < others.min()  # already below the others: the top-up leaves it alone


def test_an_unknown_allocation_is_refused():
    with pytest.raises(ValueError, match="allocation"):
        CompactorConfig(allocation="per-stage")


def test_compress_builds_what_its_settings_name_and_labels_it():
    from capdist.methods import CompressConfig
    from capdist.methods.cdd import _attach
    from capdist.methods.cdd_report import method_label
    from capdist.settings import configure

    config = configure(CompressConfig(), allocation="uniform", internal_compactor="diagonal")
    cm = _attach(TinyResNet(in_channels=1, width=8), torch.randn(1, 1, 8, 8), config)
    assert cm.config.allocation == "uniform" and cm.config.diagonal_internal
    assert all(type(c).__name__ == "DiagonalCompactor" for c in cm.compactors())
    label = method_label(config, 1)
    assert "uniform allocation" in label and "diagonal internal compactors" in label
    assert method_label(CompressConfig(), 1) == "cdd-retrieval"
