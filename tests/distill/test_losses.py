"""Each loss against values worked out by hand on tiny tensors, plus the properties the papers state."""

import math

import pytest
import torch

from capdist.distill import REGISTRY
from capdist.distill import embeddings as E
from capdist.distill import features as Fe
from capdist.distill import logits as L
from capdist.distill import relations as R


def test_kd_by_hand():
    # p_t = (0.75, 0.25), p_s = (0.5, 0.5): KL = .75 ln 1.5 + .25 ln .5
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(L.kd_loss(s, t, temperature=1.0)) == pytest.approx(expected, rel=1e-5)
    assert float(L.kd_loss(s, t, temperature=2.0)) > 0


def test_dkd_by_hand():
    # p_t = (.5, .25, .25), p_s uniform; binary (target, rest): t (.5, .5), s (1/3, 2/3); the
    # non-target distributions are both uniform, so NCKD = 0.
    s, t = torch.zeros(1, 3), torch.tensor([[math.log(2.0), 0.0, 0.0]])
    tckd = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))
    assert float(L.dkd_loss(s, t, torch.tensor([0]), temperature=1.0)) == pytest.approx(tckd, abs=1e-6)


def test_feature_losses_by_hand():
    assert float(Fe.fitnet_loss(torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2))) == 1.0
    # attention of a constant map is (.5, .5, .5, .5); of a single hot pixel (1, 0, 0, 0)
    hot = torch.zeros(1, 1, 2, 2)
    hot[0, 0, 0, 0] = 1.0
    assert float(Fe.at_loss(torch.ones(1, 3, 2, 2), hot)) == pytest.approx(0.25)
    # HCL on 2x2: full-size MSE .25, level-1 pooled MSE (.25)^2 with weight .5, total weight 1.5
    assert float(Fe.hcl_loss(torch.zeros(1, 1, 2, 2), hot)) == pytest.approx((0.25 + 0.5 * 0.0625) / 1.5)
    blocks_s = [torch.zeros(2, 3, 4, 4), torch.zeros(2, 5)]
    blocks_t = [torch.ones(2, 3, 4, 4), 2 * torch.ones(2, 5)]
    assert float(Fe.pooled_feature_loss(blocks_s, blocks_t)) == pytest.approx((1 + 4) / 2)


def test_rkd_distance_by_hand():
    t = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    s = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    d_s = [2.0, 1.0, math.sqrt(5)]
    d_t = [1.0, 1.0, math.sqrt(2)]
    ms, mt = sum(d_s) / 3, sum(d_t) / 3
    huber = [0.5 * (a / ms - b / mt) ** 2 for a, b in zip(d_s, d_t, strict=True)]  # all |x| < 1
    expected = 2 * sum(huber) / 9  # mean over the full 3x3 matrix (zero diagonal)
    assert float(R.rkd_distance_loss(s, t)) == pytest.approx(expected, rel=1e-5)


def test_pkt_and_sp_by_hand():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # cosine -> (cos+1)/2: teacher rows (1, .5) -> (2/3, 1/3); student rows (1, 1) -> (1/2, 1/2)
    kl = (2 / 3) * math.log((2 / 3) / 0.5) + (1 / 3) * math.log((1 / 3) / 0.5)
    assert float(R.pkt_loss(s, t)) == pytest.approx(kl, rel=1e-4)
    # Gram: teacher I -> rows (1,0),(0,1); student all ones -> rows (.7071, .7071)
    g = 1 / math.sqrt(2)
    expected = (2 * ((1 - g) ** 2 + g**2)) / 4
    assert float(R.sp_loss(s, t)) == pytest.approx(expected, rel=1e-5)


def test_embedding_losses_by_hand():
    s, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert float(E.embedding_mse_loss(s, t)) == pytest.approx(1.0)
    assert float(E.embedding_cosine_loss(s, t)) == pytest.approx(1.0)
    # CSD with two items: teacher gallery sims sorted (1, 0) -> softmax at T=1 (e/(e+1), 1/(e+1));
    # student sims to the same items (0, 1)
    t2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    p = [math.e / (math.e + 1), 1 / (math.e + 1)]
    q = [1 / (math.e + 1), math.e / (math.e + 1)]
    kl = sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))
    assert float(E.csd_loss(s2, t2, k=2, t_query=1.0, t_gallery=1.0)) == pytest.approx(kl, rel=1e-5)


def test_cross_contrastive_by_hand():
    # two images, unit embeddings: the student's first matches the teacher's first (cos 1) and is
    # orthogonal to the second (cos 0); the second student embedding is at 60 degrees from the first
    # teacher embedding and 30 from its own
    s = torch.tensor([[1.0, 0.0], [0.5, 0.5 * math.sqrt(3)]])
    t = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    tau = 0.5
    first = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0)))
    c = math.sqrt(3) / 2
    second = -math.log(math.exp(c / tau) / (math.exp(0.5 / tau) + math.exp(c / tau)))
    assert float(E.cross_contrastive_loss(s, t, temperature=tau)) == pytest.approx((first + second) / 2, rel=1e-6)
    s.requires_grad_(True)
    E.cross_contrastive_loss(s, t.requires_grad_(True)).backward()
    assert t.grad is None, "the teacher's gallery is not trained"


def test_cross_contrastive_with_labels_drops_same_identity_negatives_by_hand():
    # three images, the first two of one identity: with labels, query 0 no longer sees teacher 1
    s = torch.eye(3)
    t = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    tau = 1.0
    plain = -math.log(math.e / (math.e + 2))  # every query: its own cos 1 against two cos 0
    with_labels = [-math.log(math.e / (math.e + 1)), -math.log(math.e / (math.e + 1)), plain]
    assert float(E.cross_contrastive_loss(s, t, tau)) == pytest.approx(plain, rel=1e-6)
    assert float(E.cross_contrastive_loss(s, t, tau, labels)) == pytest.approx(sum(with_labels) / 3, rel=1e-6)
    # label positives: query 0's positives are teachers 0 and 1 (e^1 + e^0) among all three
    by_label = [-math.log((math.e + 1) / (math.e + 2)), -math.log((math.e + 1) / (math.e + 2)), plain]
    assert float(E.cross_contrastive_loss(s, t, tau, labels, positives="label")) == pytest.approx(
        sum(by_label) / 3, rel=1e-6)
    # a student equal to its teacher, well separated, has almost no loss
    assert float(E.cross_contrastive_loss(t, t, 0.01, labels)) < 1e-6


@pytest.mark.parametrize("name", ["kd", "fitnet", "at", "rkd_distance", "rkd_angle", "pkt", "sp", "cc",
                                  "emb_mse", "emb_cosine", "raml", "d3still"])
def test_zero_when_student_equals_teacher(name):
    torch.manual_seed(0)
    x = torch.randn(6, 4, 3, 3) if REGISTRY[name].needs == "feature" else torch.randn(6, 8)
    info = REGISTRY[name]
    assert float(info.fn(x, x.clone(), **info.params)) == pytest.approx(0.0, abs=1e-5)


def test_rop_is_minimal_when_student_equals_teacher():
    torch.manual_seed(0)
    t = torch.randn(8, 6)
    same = float(E.rop_loss(t, t))
    assert same <= float(E.rop_loss(torch.randn(8, 6), t))


@pytest.mark.parametrize("name", ["rkd_distance", "rkd_angle"])
def test_rkd_is_invariant_to_feature_scale(name):
    torch.manual_seed(0)
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    fn = REGISTRY[name].fn
    assert float(fn(3.0 * s, t)) == pytest.approx(float(fn(s, t)), rel=1e-4)
    assert float(fn(s, 5.0 * t)) == pytest.approx(float(fn(s, t)), rel=1e-4)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_gradients_reach_student_never_teacher(name):
    torch.manual_seed(0)
    info = REGISTRY[name]
    shape = (6, 4, 4, 4) if info.needs in ("feature", "features") else (6, 10)
    s = torch.randn(shape, requires_grad=True)
    t = torch.randn(shape, requires_grad=True)
    if name == "reviewkd":
        loss = info.fn([s], [t])
    elif name in ("cdd_pooled", "cdd_block"):
        loss = info.fn([s], [t])
    elif info.needs == "logits+labels":
        loss = info.fn(s, t, torch.arange(6) % 10, **info.params)
    else:
        loss = info.fn(s, t, **info.params)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None or t.grad.abs().sum() == 0


def test_block_feature_loss_is_the_authors_sum_of_batch_mean_unsquared_distances():
    from capdist.distill.features import block_feature_loss

    s1 = torch.zeros(2, 2, 3, 3)
    t1 = torch.zeros(2, 2, 3, 3)
    t1[0, 0] = 3.0                      # sample 0: pooled difference (3, 4) -> distance 5
    t1[0, 1] = 4.0
    t1[1, 1] = 1.0                      # sample 1: (0, 1) -> 1
    s2 = torch.ones(2, 4, 2, 2)
    t2 = torch.ones(2, 4, 2, 2) * 3.0   # every sample: (2, 2, 2, 2) -> 4
    # block 1: mean(5, 1) = 3; block 2: mean(4, 4) = 4; summed over blocks: 7
    assert float(block_feature_loss([s1, s2], [t1, t2])) == pytest.approx(7.0)
    s1.requires_grad_(True)
    block_feature_loss([s1], [t1]).backward()
    # d/ds of ||pool(s) - pool(t)|| / B: unit vector / (B * H * W) per position, unsquared (not scaled by C)
    assert float(s1.grad[0, 0, 0, 0]) == pytest.approx(-0.6 / (2 * 9))


def test_block_layers_take_each_bottleneck_once_before_its_compactor():
    from capdist.compactor import CompactorConfig, attach
    from capdist.methods.cdd_objective import block_layers
    from capdist.testing.user_models import gem_resnet

    cm = attach(gem_resnet("resnet50", dim=8), torch.randn(2, 3, 32, 32), CompactorConfig(scope="all"))
    blocks = block_layers(cm)
    assert len(blocks) == 16 and all(b.endswith(".bn2") for b in blocks)
