"""The stacked optimisers against K independent torch optimisers with clip_grad_norm_."""

import pytest
import torch
from torch import nn

from rlhp import optim

K, SHAPES = 4, [(3, 5), (5,), (5, 2)]


def independent_runs(opt_cls, lrs, max_norms, grads_per_step, **kw):
    """K separate parameter sets, each with its own torch optimiser and gradient clipping."""
    torch.manual_seed(0)
    members = [[torch.randn(s, dtype=torch.float64) for s in SHAPES] for _ in range(K)]
    start = [[p.clone() for p in m] for m in members]
    for k, params in enumerate(members):
        params = [nn.Parameter(p) for p in params]
        opt = opt_cls(params, lr=lrs[k], **kw)
        for grads in grads_per_step:
            for p, g in zip(params, grads[k], strict=True):
                p.grad = g.clone()
            if max_norms[k] != float("inf"):
                nn.utils.clip_grad_norm_(params, max_norms[k])
            opt.step()
        members[k] = [p.detach() for p in params]
    return start, members


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_stacked_optimiser_equals_independent_torch_optimisers(name):
    lrs = [1e-3, 3e-2, 1e-4, 0.5]
    max_norms = [0.5, 1e9, 0.05, float("inf")]  # clipped, not reached, clipped hard, disabled
    gen = torch.Generator().manual_seed(1)
    grads_per_step = [
        [[torch.randn(s, generator=gen, dtype=torch.float64) * (k + 1) for s in SHAPES]
         for k in range(K)]
        for _ in range(5)
    ]  # fmt: skip
    torch_cls, kw = (
        (torch.optim.Adam, {"eps": 1e-5}) if name == "adam" else
        (torch.optim.RMSprop, {"alpha": 0.99, "eps": 1e-5})
    )  # fmt: skip
    start, expected = independent_runs(torch_cls, lrs, max_norms, grads_per_step, **kw)

    flat = torch.stack([torch.cat([p.flatten() for p in m]) for m in start])
    grad = torch.zeros_like(flat)
    opt = optim.make(name, flat, grad)
    lr = torch.tensor(lrs, dtype=torch.float64)
    for grads in grads_per_step:
        grad.copy_(torch.stack([torch.cat([g.flatten() for g in m]) for m in grads]))
        norms = optim.clip_grad_norm(grad, torch.tensor(max_norms, dtype=torch.float64))
        assert norms.shape == (K,)
        opt.step(lr)
    for k in range(K):
        want = torch.cat([p.flatten() for p in expected[k]])
        assert (flat[k] - want).abs().max() < 1e-6
        assert (flat[k] - torch.cat([p.flatten() for p in start[k]])).abs().max() > 1e-6


def test_one_global_norm_would_couple_members_but_the_per_member_clip_does_not():
    grad = torch.tensor([[3.0, 4.0], [0.03, 0.04]])  # norms 5 and 0.05
    optim.clip_grad_norm(grad, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(grad[0], torch.tensor([0.6, 0.8]), atol=1e-6, rtol=0)
    torch.testing.assert_close(grad[1], torch.tensor([0.03, 0.04]))


def test_a_reset_member_restarts_its_bias_correction_and_leaves_the_others():
    flat = torch.zeros(2, 3)
    grad = torch.ones(2, 3)
    opt = optim.StackedAdam(flat, grad)
    opt.step(torch.tensor([0.1, 0.1]))
    opt.step(torch.tensor([0.1, 0.1]))
    before = opt.exp_avg[1].clone()
    opt.reset_member(0)
    assert opt.steps.flatten().tolist() == [0.0, 2.0]
    torch.testing.assert_close(opt.exp_avg[1], before)
    flat[0] = 0.0
    opt.step(torch.tensor([0.1, 0.1]))
    # Adam's first step moves every coordinate by lr, whatever the gradient's scale
    torch.testing.assert_close(flat[0], torch.full((3,), -0.1))


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_a_masked_step_leaves_the_other_members_as_if_they_had_not_stepped(name):
    torch.manual_seed(0)
    flat, grad = torch.randn(3, 5), torch.randn(3, 5)
    masked = optim.make(name, flat.clone(), grad.clone())
    each = [optim.make(name, flat[k : k + 1].clone(), grad[k : k + 1].clone()) for k in range(3)]
    lr = torch.tensor([0.1, 0.2, 0.3])
    for mask in ([True, False, True], [False, True, True], [True, True, True]):
        mask = torch.tensor(mask)
        masked.step(lr, mask)
        for k in range(3):
            if mask[k]:
                each[k].step(lr[k : k + 1])
    for k in range(3):
        torch.testing.assert_close(masked.flat[k], each[k].flat[0])
