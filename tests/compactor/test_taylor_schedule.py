"""Schedule T: units ranked by first-order Taylor importance of the task loss, under ResRep's target and pacing."""

import pytest
import torch

from capdist.compactor import CompactorConfig, attach
from capdist.compactor.taylor_schedule import TaylorSchedule, task_taylor_terms
from capdist.testing import TinyResNet


def _compacted(seed: int = 0, diagonal_residual: bool = False):
    torch.manual_seed(seed)
    net = TinyResNet(in_channels=1, width=8)
    config = CompactorConfig(scope="all", penalty=0.05, diagonal_residual=diagonal_residual)
    return net, attach(net, torch.randn(1, 1, 8, 8), config)


def _hooked_outputs(cm) -> tuple[dict, list]:
    outputs: dict[int, list[torch.Tensor]] = {}

    def keep(module, _inputs, out):
        out.retain_grad()
        outputs.setdefault(id(module), []).append(out)

    return outputs, [c.register_forward_hook(keep) for g in cm.groups for c in g.compactors]


def _activation_terms(cm, outputs, g) -> torch.Tensor:
    want = sum((o * o.grad).sum((0, 2, 3)) for c in g.compactors for o in outputs[id(c)]) * g.mask.float()
    return want.view(g.spec.unit_size, g.spec.period).sum(0)


@pytest.mark.parametrize("penalty_in_loss", [False, True])
@pytest.mark.parametrize("diagonal_residual", [False, True])
def test_terms_equal_activation_times_gradient(penalty_in_loss, diagonal_residual):
    # Q_j . dL/dQ_j = sum over the batch and positions of a_j * dL/da_j for the compactor's output a:
    # checked against the activations and their gradients read by hooks (the penalty acts on the weights
    # alone, so these hold the task part only), whether or not the penalty was in the loss, for dense and
    # diagonal compactors, with a penalty large enough that leaving its part in would fail the check
    net, cm = _compacted(diagonal_residual=diagonal_residual)
    net.train()
    with torch.no_grad():
        for g in cm.groups:
            for c in g.compactors:
                c.weight.add_(0.1 * torch.randn_like(c.weight))
    g0 = cm.groups[0]
    g0.set_mask(torch.arange(g0.channels) != 1)
    outputs, hooks = _hooked_outputs(cm)
    loss = net(torch.randn(4, 1, 8, 8)).pow(2).mean()
    if penalty_in_loss:
        loss = loss + cm.penalty()
    loss.backward()
    cm.reset_gradients()
    for h in hooks:
        h.remove()
    assert diagonal_residual == any(type(c).__name__ == "DiagonalCompactor" for c in cm.compactors())
    for g in cm.groups:
        got = task_taylor_terms(g, cm.config.penalty)
        torch.testing.assert_close(got, _activation_terms(cm, outputs, g), rtol=1e-4, atol=1e-6)
    assert task_taylor_terms(g0, cm.config.penalty)[1] == 0  # a masked row scores nothing


def test_scores_come_from_the_weights_a_step_updates_and_skipped_steps_add_nothing():
    # through the optimizer's hook, the terms are read after resetting and before the update: with a
    # large step the post-step weights would give other figures; a backward with no step adds nothing
    net, cm = _compacted(2)
    sched = TaylorSchedule(cm, target=0.6, warmup=5, interval=1)
    opt = torch.optim.SGD(cm.param_groups(lr=0.5), lr=0.5)
    cm.register_step_hook(opt)
    outputs, hooks = _hooked_outputs(cm)
    net(torch.randn(4, 1, 8, 8)).pow(2).mean().backward()
    opt.step()
    sched.step()
    for g in cm.groups:
        torch.testing.assert_close(sched.scores[g.name], _activation_terms(cm, outputs, g).pow(2), rtol=1e-4,
                                   atol=1e-10)
    for h in hooks:
        h.remove()
    before = {n: s.clone() for n, s in sched.scores.items()}
    opt.zero_grad(set_to_none=True)
    net(torch.randn(4, 1, 8, 8)).sum().backward()  # a step a gradient scaler skips: no optimizer.step,
    sched.step()  # but the training loop still counts it
    assert all(torch.equal(before[n], s) for n, s in sched.scores.items())


def _plant_gradients(cm, terms) -> None:
    """Set every compactor's gradient so that each unit's task term is ``terms(group)`` (plus the lasso part
    gradient resetting would have added)."""
    lam = cm.config.penalty
    for g in cm.groups:
        joint = sum(c.row_sq_norms() for c in g.compactors).sqrt()
        per_row = terms(g).repeat(g.spec.unit_size) / len(g.compactors)
        for c in g.compactors:
            w = c.weight.detach().view(c.weight.shape[0], -1)
            c.weight.grad = (w * (per_row / w.pow(2).sum(1) + lam / joint).view(-1, 1)).view_as(c.weight)


def test_masks_follow_the_taylor_terms_not_the_norm():
    # the second half of every group's units has a zero task term at every step (and the larger norm):
    # the Taylor ranking masks from that half only, where a norm ranking would keep it
    net, cm = _compacted(1)
    with torch.no_grad():
        for g in cm.groups:
            for c in g.compactors:
                c.weight.view(c.weight.shape[0], -1)[g.channels // 2:] *= 3.0
    sched = TaylorSchedule(cm, target=0.7, warmup=2, interval=1, until=2)
    for _ in range(3):
        _plant_gradients(cm, lambda g: (torch.arange(g.spec.period) < g.spec.period // 2).float())
        sched.read_gradients()  # what gradient resetting calls once it has left these gradients
        sched.step()
    assert sched.reached()
    assert any(not bool(g.kept_units().all()) for g in cm.groups)
    for g in cm.groups:
        masked = (~g.kept_units()).nonzero().flatten().tolist()
        assert not masked or min(masked) >= g.spec.period // 2, (g.name, masked)
        torch.testing.assert_close(sched.scores[g.name][0], torch.tensor(1.0))  # mean of 1**2 over steps
    g0 = cm.groups[0]
    g0.set_mask(g0.units_to_mask(torch.arange(g0.spec.period) != 0))
    _plant_gradients(cm, lambda g: torch.ones(g.spec.period))
    sched.read_gradients()
    assert sched.scores[g0.name][0] == 0 and bool((sched.scores[g0.name][1:] > 0).all())  # masked: zero
    assert sched.report()["mask_ranking"]["by"] == "first-order Taylor importance"


def test_state_round_trips():
    net, cm = _compacted()
    sched = TaylorSchedule(cm, target=0.6, warmup=5, interval=1)
    for _ in range(2):
        net.zero_grad(set_to_none=True)
        net(torch.randn(2, 1, 8, 8)).sum().backward()
        cm.reset_gradients()
        sched.step()
    other = TaylorSchedule(cm, target=0.6, warmup=5, interval=1)
    other.load_state_dict(sched.state_dict())
    assert other.steps == 2 and set(other.scores) == {g.name for g in cm.groups}
    assert all(torch.equal(other.scores[n], s) for n, s in sched.scores.items())
