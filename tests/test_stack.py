"""Stacked layers and the stacked actor-critic against K separate torch modules."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlhp.net import ActorCritic, Tanh, init_layer
from rlhp.stack import StackedActorCritic, StackedConv2d, StackedLinear

K = 3


def test_stacked_linear_equals_k_linear_layers_forward_and_backward():
    layers = [nn.Linear(4, 6) for _ in range(K)]
    stacked = StackedLinear(K, 4, 6)
    with torch.no_grad():
        for k, layer in enumerate(layers):
            stacked.weight[k] = layer.weight.T
            stacked.bias[k, 0] = layer.bias
    x = torch.randn(K, 5, 4)
    out = stacked(x)
    for k, layer in enumerate(layers):
        torch.testing.assert_close(out[k], layer(x[k]))
        (layer(x[k]) ** 2).sum().backward()
    (out**2).sum().backward()
    for k, layer in enumerate(layers):
        torch.testing.assert_close(stacked.weight.grad[k], layer.weight.grad.T)
        torch.testing.assert_close(stacked.bias.grad[k, 0], layer.bias.grad)


def test_tanh_equals_torchs_forward_and_backward():
    x = torch.linspace(-12, 12, 4001, dtype=torch.float64).reshape(1, -1, 1)
    x = torch.cat([x, torch.randn(1, 4001, 1, dtype=torch.float64)]).requires_grad_()
    ref = x.detach().clone().requires_grad_()
    grad = torch.randn_like(x)
    ours = Tanh()(x)
    ours.backward(grad)
    torch.tanh(ref).backward(grad)
    torch.testing.assert_close(ours, torch.tanh(ref), atol=1e-12, rtol=0)
    torch.testing.assert_close(x.grad, ref.grad, atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(Tanh(), (x[:, :50].detach().requires_grad_(),))
    x32 = torch.randn(K, 64, 6) * 4  # float32, as the nets run: to 2e-7 (rlhp.net.Tanh)
    torch.testing.assert_close(Tanh()(x32), torch.tanh(x32), atol=2.5e-7, rtol=0)


def test_stacked_conv_equals_k_conv_layers():
    convs = [nn.Conv2d(2, 3, 4, stride=2) for _ in range(K)]
    stacked = StackedConv2d(K, 2, 3, 4, 2)
    with torch.no_grad():
        for k, conv in enumerate(convs):
            stacked.weight[k] = conv.weight
            stacked.bias[k] = conv.bias
    x = torch.randn(K, 5, 2, 10, 10)  # members, batch, channels, H, W
    out = stacked(x.transpose(0, 1).reshape(5, K * 2, 10, 10))  # [B, K * out, H', W']
    out = out.reshape(5, K, 3, 4, 4).transpose(0, 1)
    for k, conv in enumerate(convs):
        torch.testing.assert_close(out[k], conv(x[k]), atol=1e-5, rtol=1e-5)


def test_member_init_equals_the_single_network_init_from_the_same_seed():
    obs, act = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)
    stacked = StackedActorCritic(K, obs, act, "mlp", [8, 8], "tanh")
    for k in range(K):
        stacked.init_member(k, seed=10 + k)
    alone = StackedActorCritic(1, obs, act, "mlp", [8, 8], "tanh")
    alone.init_member(0, seed=11)
    torch.testing.assert_close(stacked.flat[1], alone.flat[0])
    assert not torch.equal(stacked.flat[0], stacked.flat[1])
    # the same orthogonal init as rlhp.net's layers: same singular values (gain sqrt 2)
    w = stacked.actor_body.layers[0].weight[0]
    ref = init_layer(nn.Linear(4, 8)).weight.T
    torch.testing.assert_close(torch.linalg.svdvals(w), torch.linalg.svdvals(ref))


@pytest.mark.parametrize("discrete", [True, False])
def test_stacked_actor_critic_equals_per_member_actor_critics(discrete):
    obs_space = gym.spaces.Box(-1, 1, (4,))
    act_space = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1, 1, (2,))
    stacked = StackedActorCritic(K, obs_space, act_space, "mlp", [8, 8], "tanh")
    for k in range(K):
        stacked.init_member(k, seed=k)
    nets = [ActorCritic(obs_space, act_space, "mlp", [8, 8], "tanh") for _ in range(K)]
    with torch.no_grad():
        for k, net in enumerate(nets):
            for (a, s) in [(net.actor_body[0], stacked.actor_body.layers[0]),
                           (net.actor_body[2], stacked.actor_body.layers[1]),
                           (net.critic_body[0], stacked.critic_body.layers[0]),
                           (net.critic_body[2], stacked.critic_body.layers[1]),
                           (net.actor, stacked.actor), (net.critic, stacked.critic)]:  # fmt: skip
                a.weight.copy_(s.weight[k].T)
                a.bias.copy_(s.bias[k, 0])
            if not discrete:
                net.log_std.copy_(stacked.log_std[k, 0] + 0.1 * k)
                stacked.log_std[k] += 0.1 * k
    x = torch.randn(K, 6, 4)
    logits, value = stacked.logits_value(x)
    dist = stacked.distribution(logits)
    action = stacked.sample(logits)
    assert action.shape == ((K, 6) if discrete else (K, 6, 2))
    logp, ent = stacked.log_prob(dist, action), stacked.entropy(dist)
    for k, net in enumerate(nets):
        ref_dist, ref_value = net.dist_value(x[k])
        torch.testing.assert_close(value[k], ref_value)
        torch.testing.assert_close(logp[k], net.log_prob(ref_dist, action[k]))
        torch.testing.assert_close(ent[k], net.entropy(ref_dist))
        torch.testing.assert_close(stacked.greedy(x)[k], net.greedy(x[k]))


def test_sampling_follows_the_policy_and_each_member_its_own_generator():
    obs_space, act_space = gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(3)
    net = StackedActorCritic(2, obs_space, act_space, "mlp", [4], "tanh")
    net.init_member(0, seed=0)
    net.init_member(1, seed=1)
    probs = torch.tensor([0.2, 0.5, 0.3])
    logits = probs.log().expand(2, 20000, 3)
    actions = net.sample(logits)
    freq = np.bincount(actions[0].numpy(), minlength=3) / 20000
    np.testing.assert_allclose(freq, probs.numpy(), atol=0.015)
    # member 1's draws depend on its generator only, not on member 0's policy
    net.init_member(1, seed=1)
    other = net.sample(torch.stack([torch.zeros(20000, 3), logits[1]]))
    torch.testing.assert_close(other[1], actions[1])
    net.init_member(1, seed=2)
    assert not torch.equal(net.sample(logits)[1], actions[1])


def test_members_ks_run_alone_and_only_they_get_a_gradient():
    """With `ks` only those members run ([A, ...] in and out): the same outputs as their rows
    of the full forward, gradients in their rows only, the idle members' generators unmoved."""
    obs_space, act_space = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (2,))
    net = StackedActorCritic(K, obs_space, act_space, "mlp", [8, 8], "tanh")
    for k in range(K):
        net.init_member(k, seed=k)
    net.log_std.data[:] = torch.tensor([0.1, 0.2, 0.3]).view(K, 1, 1)
    x, ks = torch.randn(K, 5, 4), torch.tensor([0, 2])
    full_logits, full_value = net.logits_value(x)
    idle = net.generators[1].get_state()
    logits, value = net.logits_value(x[ks], ks)
    torch.testing.assert_close(logits, full_logits[ks])  # to float rounding: bmm of A, not K
    torch.testing.assert_close(value, full_value[ks])
    action = net.sample(logits, ks).detach()
    assert torch.equal(net.generators[1].get_state(), idle)
    dist = net.distribution(logits, ks)
    torch.testing.assert_close(dist.scale[1], net.log_std[2].exp().expand(5, 2))
    net.grad.zero_()
    (net.log_prob(dist, action).sum() + value.sum()).backward()
    assert net.grad[1].abs().sum() == 0 and (net.grad[ks].abs().sum(1) > 0).all()
    full = StackedActorCritic(K, obs_space, act_space, "mlp", [8, 8], "tanh")
    full.flat.copy_(net.flat)
    full_dist = full.distribution(full.logits(x))
    (full.log_prob(full_dist, action.new_zeros(K, 5, 2).index_copy(0, ks, action)).sum()
     + full.value(x)[ks].sum()).backward()  # fmt: skip
    torch.testing.assert_close(net.grad[ks], full.grad[ks])


def test_stacked_conv_of_members_ks_equals_their_rows():
    stacked = StackedConv2d(K, 2, 3, 4, 2)
    for k in range(K):
        stacked.init_weights(k, torch.Generator().manual_seed(k))
    x = torch.randn(5, K * 2, 10, 10)
    full = stacked(x).reshape(5, K, 3, 4, 4)
    part = stacked(
        x.reshape(5, K, 2, 10, 10)[:, [2, 0]].reshape(5, 4, 10, 10), torch.tensor([2, 0])
    )
    torch.testing.assert_close(part.reshape(5, 2, 3, 4, 4), full[:, [2, 0]])
