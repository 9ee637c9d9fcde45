"""SAC: the squashed Gaussian's log-density, actions inside the bounds, the temperature's
direction, Polyak targets, the frame schedule and a state_dict that carries the replay."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhp.algo.sac import SAC, squashed_sample

from ._stubs import algo_config, vec_env

SMALL = {"hid_layers": [16, 16], "batch_size": 8}


def make_agent(num_envs=1, low=(-2.0, 0.0), high=(2.0, 1.0), **overrides) -> SAC:
    cfg = algo_config("sac", SMALL, overrides)
    box = gym.spaces.Box(np.array(low, np.float32), np.array(high, np.float32))
    env = vec_env(num_envs, box, obs_dim=3)
    return SAC(cfg, env, "mlp", 1000, torch.device("cpu"))


def test_squashed_log_prob_by_hand():
    mean, log_std = torch.tensor([[0.3, -1.2]]), torch.tensor([[-0.5, 0.1]])
    action, logp = squashed_sample(mean, log_std, deterministic=True)  # u = mean
    std = np.exp([-0.5, 0.1])
    u = np.array([0.3, -1.2])
    # log N(u; mean, std) at u = mean, minus log |d tanh(u)/du| = log(1 - tanh(u)^2)
    by_hand = (-np.log(std) - 0.5 * np.log(2 * np.pi) - np.log(1 - np.tanh(u) ** 2)).sum()
    np.testing.assert_allclose(action.numpy()[0], np.tanh(u), rtol=1e-6)
    assert logp.item() == pytest.approx(by_hand, rel=1e-5)


def test_squashed_log_prob_is_the_density_of_the_actions():
    """The histogram of sampled actions matches exp(log pi(a)) returned with them."""
    torch.manual_seed(0)
    n = 400_000
    mean, log_std = torch.full((n, 1), 0.7), torch.full((n, 1), math.log(1.5))
    action, logp = squashed_sample(mean, log_std)
    a, density = action[:, 0].numpy(), logp.exp().numpy()
    edges = np.linspace(-0.8, 0.8, 17)  # where the density is smooth at this bin width
    counts, _ = np.histogram(a, edges)
    empirical = counts / (n * np.diff(edges))
    bins = np.digitize(a, edges) - 1
    inside = (bins >= 0) & (bins < len(edges) - 1)
    claimed = np.bincount(bins[inside], density[inside], len(edges) - 1) / counts
    np.testing.assert_allclose(claimed, empirical, rtol=0.05)


def test_actions_stay_in_the_bounds():
    agent = make_agent(num_envs=64, learning_starts=10)
    obs = np.random.randn(64, 3).astype(np.float32)
    for frame in (0, 100):  # random before learning_starts, then the policy
        agent.frame = frame
        action = agent.act(obs)
        assert action.shape == (64, 2)
        assert (action[:, 0] >= -2).all() and (action[:, 0] <= 2).all()
        assert (action[:, 1] >= 0).all() and (action[:, 1] <= 1).all()
        assert action[:, 0].std() > 0.1  # the whole range is used, not squeezed to [-1, 1]
        assert (np.abs(agent.action) <= 1).all()  # replay keeps the [-1, 1] action


def fill(agent: SAC, frames: int) -> None:
    obs = np.random.randn(agent.num_envs, 3).astype(np.float32)
    zeros = np.zeros(agent.num_envs, bool)
    for _ in range(frames // agent.num_envs):
        agent.act(obs)
        agent.observe(obs, np.ones(agent.num_envs), zeros, zeros, None)


@pytest.mark.parametrize("auto_alpha", [True, False])
def test_temperature_moves_towards_the_target_entropy(auto_alpha):
    agent = make_agent(auto_alpha=auto_alpha, alpha=0.5)
    fill(agent, 16)
    before = agent.log_alpha.item()
    agent.target_entropy = 100.0  # far above the policy's entropy: alpha must grow
    agent.train_step(agent.memory.sample(8))
    if auto_alpha:
        assert agent.log_alpha.item() > before
        agent.target_entropy = -100.0  # far below: alpha must shrink
        before = agent.log_alpha.item()
        agent.train_step(agent.memory.sample(8))
        assert agent.log_alpha.item() < before
    else:
        assert agent.log_alpha.item() == pytest.approx(math.log(0.5))


def test_polyak_targets():
    agent = make_agent(tau=0.1)
    fill(agent, 16)
    old_target = [p.clone() for p in agent.q1_target.parameters()]
    agent.train_step(agent.memory.sample(8))
    for t, q, o in zip(
        agent.q1_target.parameters(), agent.q1.parameters(), old_target, strict=True
    ):
        torch.testing.assert_close(t, 0.1 * q + 0.9 * o)
        assert not torch.equal(t, o)


def test_schedule_and_state_dict():
    agent = make_agent(num_envs=2, learning_starts=8, training_frequency=4, training_iter=3)
    calls = []
    step = agent.train_step
    agent.train_step = lambda batch: (calls.append(1), step(batch))[1]
    obs, zeros = np.zeros((2, 3), np.float32), np.zeros(2, bool)
    trained = []
    for frame in range(2, 21, 2):
        agent.act(obs)
        agent.observe(obs, np.ones(2), zeros, zeros, None)
        if agent.update(frame) is not None:
            trained.append(frame)
    assert trained == [8, 12, 16, 20] and len(calls) == 12
    other = make_agent(num_envs=2)
    other.load_state_dict(agent.state_dict())
    assert len(other.memory) == 20 and other.frame == 20
    assert other.log_alpha.item() == agent.log_alpha.item()
    x = torch.randn(4, 3)
    torch.testing.assert_close(other.actor(x), agent.actor(x))
    a = torch.rand(4, 2)
    torch.testing.assert_close(other.q2_target(x, a), agent.q2_target(x, a))


def test_learns_a_one_step_continuous_bandit():
    """Reward -(a - 0.5)^2 in one-step episodes: the policy's mean action goes to 0.5."""
    agent = make_agent(
        num_envs=8,
        low=(-1.0,),
        high=(1.0,),
        learning_starts=64,
        lr=3e-3,
        batch_size=64,
        training_frequency=8,
        training_iter=2,
    )
    torch.manual_seed(0)
    np.random.seed(0)
    obs, done = np.zeros((8, 3), np.float32), np.ones(8, bool)
    for frame in range(8, 1201, 8):
        action = agent.act(obs)
        agent.observe(obs, -((action[:, 0] - 0.5) ** 2), done, ~done, None)
        agent.update(frame)
    mean, _ = agent.actor(torch.zeros(1, 3))
    assert torch.tanh(mean).item() == pytest.approx(0.5, abs=0.15)
