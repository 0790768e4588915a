"""Penalty and gradient resetting against hand-computed values (ResRep's formula)."""

import pytest
import torch

from capdist.compactor import CompactorConfig, attach
from capdist.testing import TinyResNet


def _setup(lam=0.1):
    net = TinyResNet(in_channels=1, width=4)
    cm = attach(net, torch.randn(2, 1, 8, 8), CompactorConfig(scope="all", penalty=lam))
    with torch.no_grad():
        for c in cm.compactors():
            c.weight.copy_(torch.randn_like(c.weight))
    return net, cm


def _joint_norms(group):
    return torch.stack([c.weight.view(c.weight.shape[0], -1) for c in group.compactors]
                       ).pow(2).sum((0, 2)).sqrt()


def test_penalty_is_lambda_times_sum_of_joint_row_norms():
    _, cm = _setup(lam=0.1)
    expected = 0.1 * sum(float(_joint_norms(g).detach().sum()) for g in cm.groups)
    assert float(cm.penalty()) == pytest.approx(expected, rel=1e-5)
    coupled = [g for g in cm.groups if len(g.compactors) > 1]
    assert coupled, "scope=all must give residual groups with several compactors"


@pytest.mark.parametrize("penalty_in_loss", [False, True, "logged only"])
def test_reset_gradients_formula(penalty_in_loss):
    """The same gradient with the penalty in the loss, out of it, or computed only to be logged."""
    net, cm = _setup(lam=0.1)
    g = max(cm.groups, key=lambda g: len(g.compactors))
    keep = torch.ones(g.channels, dtype=torch.bool)
    keep[::2] = False
    g.set_mask(keep)
    x = torch.randn(4, 1, 8, 8)
    task = net(x).pow(2).mean()
    task_grads = torch.autograd.grad(task, [c.weight for c in g.compactors], retain_graph=True)
    if penalty_in_loss == "logged only":
        logged = float(cm.penalty())
        assert logged > 0
    loss = task + cm.penalty() if penalty_in_loss is True else task
    loss.backward()
    cm.reset_gradients()
    norms = _joint_norms(g)
    m = keep.float().view(-1, 1)
    for c, tg in zip(g.compactors, task_grads, strict=True):
        w = c.weight.detach().view(c.weight.shape[0], -1)
        expected = m * tg.view_as(w) + 0.1 * w / norms.view(-1, 1)
        assert torch.allclose(c.weight.grad.view_as(w), expected, atol=1e-6)


def test_masked_rows_decay_under_sgd():
    net, cm = _setup(lam=0.1)
    g = cm.groups[0]
    keep = torch.ones(g.channels, dtype=torch.bool)
    keep[0] = False
    g.set_mask(keep)
    opt = torch.optim.SGD(cm.compactor_parameters(), lr=0.05)
    cm.register_step_hook(opt)
    start = float(g.row_norms()[0])
    for _ in range(20):
        opt.zero_grad()
        net(torch.randn(4, 1, 8, 8)).mean().backward()
        opt.step()
    # Only the penalty acts on a masked row: its norm drops by lr * lambda per step.
    assert float(g.row_norms()[0]) == pytest.approx(max(start - 20 * 0.05 * 0.1, 0), abs=6e-3)


def test_param_groups_give_compactors_high_momentum_and_no_decay():
    _, cm = _setup()
    groups = cm.param_groups(lr=0.1, weight_decay=5e-4)
    comp = [g for g in groups if g.get("capdist") == "compactor"][0]
    assert comp["momentum"] == 0.99 and comp["weight_decay"] == 0.0
    ids = {id(p) for p in comp["params"]}
    assert ids == {id(p) for p in cm.compactor_parameters()}
    assert not ids & {id(p) for p in groups[0]["params"]}


def test_masked_penalty_applies_to_masked_rows_only():
    net, cm = _setup(lam=0.1)
    cm.config.masked_penalty = 0.7
    g = cm.groups[0]
    keep = torch.ones(g.channels, dtype=torch.bool)
    keep[0] = False
    g.set_mask(keep)
    x = torch.randn(4, 1, 8, 8)
    task = net(x).pow(2).mean()
    task_grads = torch.autograd.grad(task, [c.weight for c in g.compactors], retain_graph=True)
    task.backward()
    cm.reset_gradients()
    norms = _joint_norms(g).detach()
    coef = torch.where(keep, torch.tensor(0.1), torch.tensor(0.7)).view(-1, 1)
    for c, tg in zip(g.compactors, task_grads, strict=True):
        w = c.weight.detach().view(c.weight.shape[0], -1)
        expected = keep.float().view(-1, 1) * tg.view_as(w) + coef * w / norms.view(-1, 1)
        assert torch.allclose(c.weight.grad.view_as(w), expected, atol=1e-6)


def _mask_first_rows(cm, n=2):
    g = max(cm.groups, key=lambda g: len(g.compactors))
    keep = torch.ones(g.channels, dtype=torch.bool)
    keep[:n] = False
    g.set_mask(keep)
    return g, keep


def test_settle_pins_only_rows_that_crossed_zero():
    _, cm = _setup()
    g, keep = _mask_first_rows(cm)
    before = cm.masked_rows()
    c0 = g.compactors[0]
    w = c0.weight.view(c0.weight.shape[0], -1)
    opt = torch.optim.SGD(cm.compactor_parameters(), lr=0.1, momentum=0.9)
    for c in g.compactors:
        opt.state[c.weight]["momentum_buffer"] = torch.ones_like(c.weight)
    with torch.no_grad():
        w[0].mul_(-0.5)  # row 0 of the first compactor flips its direction: it crossed zero
        w[1].mul_(0.5)  # row 1 only shrank
        kept_before = w[2].clone()
    assert cm.settle_masked(before, opt) == 1
    assert torch.equal(w[0], torch.zeros_like(w[0]))
    assert torch.equal(opt.state[c0.weight]["momentum_buffer"].view_as(w)[0], torch.zeros_like(w[0]))
    assert bool((w[1] != 0).any()) and torch.equal(w[2], kept_before)
    assert bool((opt.state[c0.weight]["momentum_buffer"].view_as(w)[1] == 1).all())


@pytest.mark.parametrize("settle", [True, False])
def test_masked_rows_end_at_exact_zero_only_when_settled(settle):
    net, cm = _setup(lam=0.1)
    cm.config.masked_penalty = 2.0
    g, keep = _mask_first_rows(cm)
    opt = torch.optim.SGD(cm.compactor_parameters(), lr=0.05, momentum=0.9)
    if settle:
        cm.register_step_hook(opt)
    else:
        opt.register_step_pre_hook(lambda *_: cm.reset_gradients())
    for _ in range(60):  # a constant-length step of 0.1 per iteration reaches zero within about 15
        opt.zero_grad()
        net(torch.randn(4, 1, 8, 8)).pow(2).mean().backward()
        opt.step()
    masked = _joint_norms(g)[~keep]
    if settle:
        assert torch.equal(masked, torch.zeros_like(masked))
    else:  # plain subgradient steps with momentum keep swinging around zero
        assert float(masked.max()) > 1e-2
    assert float(_joint_norms(g)[keep].min()) > 0.1


def test_masked_rows_follow_masks_set_or_loaded():
    net, cm = _setup()
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    g, keep = _mask_first_rows(cm, n=3)
    gi = cm.groups.index(g)
    snap = cm.masked_rows()
    assert set(snap) == {gi} and all(rows.shape[0] == 3 for rows in snap[gi])
    net.load_state_dict(fresh)  # a checkpoint taken before any mask: nothing is masked again
    assert cm.masked_rows() == {}
