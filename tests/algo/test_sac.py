"""SAC: the squashed Gaussian's log-density, actions inside the bounds, the temperature's
direction, Polyak targets, the per-member frame schedule, a failing member, a member's state
round trip (replay included), and learning."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from _members import config

from rlhp.algo.sac import SAC, squashed_sample
from rlhp.env import VecEnv

from ._stubs import algo_config, vec_env

SMALL = {"hid_layers": [16, 16], "batch_size": 8, "memory_size": 1000}
CPU = torch.device("cpu")


def make_agent(*members: dict, num_envs=1, low=(-2.0, 0.0), high=(2.0, 1.0)) -> SAC:
    """A population of one member per dict of overrides (seeds 0, 1, ...)."""
    cfgs = [algo_config("sac", SMALL, m) for m in members or ({},)]
    box = gym.spaces.Box(np.array(low, np.float32), np.array(high, np.float32))
    agent = SAC(cfgs, vec_env(num_envs, box, obs_dim=3), "mlp", 1000, CPU)
    for k, cfg in enumerate(cfgs):
        agent.set_member(k, cfg, seed=k)
    return agent


def fill(agent: SAC, frames: int) -> np.ndarray:
    """frames per member in a state that never changes, with reward 1; returns the state."""
    rows = agent.members * agent.num_envs
    obs, zeros = np.random.randn(rows, 3).astype(np.float32), np.zeros(rows, bool)
    for _ in range(frames // agent.num_envs):
        agent.act(obs)
        agent.observe(obs, np.ones(rows, np.float32), zeros, zeros, None)
    return obs


def train_step(agent: SAC) -> None:
    members = np.arange(agent.members)
    agent.train_step(members, agent.memory.sample(members, 8))


def test_squashed_log_prob_by_hand():
    mean, log_std = torch.tensor([[0.3, -1.2]]), torch.tensor([[-0.5, 0.1]])
    action, logp = squashed_sample(mean, log_std, torch.zeros(1, 2))  # u = mean
    std = np.exp([-0.5, 0.1])
    u = np.array([0.3, -1.2])
    # log N(u; mean, std) at u = mean, minus log |d tanh(u)/du| = log(1 - tanh(u)^2)
    by_hand = (-np.log(std) - 0.5 * np.log(2 * np.pi) - np.log(1 - np.tanh(u) ** 2)).sum()
    np.testing.assert_allclose(action.numpy()[0], np.tanh(u), rtol=1e-6)
    assert logp.item() == pytest.approx(by_hand, rel=1e-5)


def test_squashed_log_prob_is_the_density_of_the_actions():
    """The histogram of sampled actions matches exp(log pi(a)) returned with them."""
    n = 400_000
    mean, log_std = torch.full((n, 1), 0.7), torch.full((n, 1), math.log(1.5))
    eps = torch.randn(n, 1, generator=torch.Generator().manual_seed(0))
    action, logp = squashed_sample(mean, log_std, eps)
    a, density = action[:, 0].numpy(), logp.exp().numpy()
    edges = np.linspace(-0.8, 0.8, 17)  # where the density is smooth at this bin width
    counts, _ = np.histogram(a, edges)
    empirical = counts / (n * np.diff(edges))
    bins = np.digitize(a, edges) - 1
    inside = (bins >= 0) & (bins < len(edges) - 1)
    claimed = np.bincount(bins[inside], density[inside], len(edges) - 1) / counts
    np.testing.assert_allclose(claimed, empirical, rtol=0.05)


def test_actions_stay_in_the_bounds():
    """Member 0 still acts at random (learning_starts), member 1 by its policy."""
    agent = make_agent({"learning_starts": 1000}, {"learning_starts": 10}, num_envs=64)
    agent.frames[:] = 100
    action = agent.act(np.random.randn(128, 3).astype(np.float32))
    assert action.shape == (128, 2)
    assert (action[:, 0] >= -2).all() and (action[:, 0] <= 2).all()
    assert (action[:, 1] >= 0).all() and (action[:, 1] <= 1).all()
    for k in (0, 1):  # the whole range is used, not squeezed to [-1, 1]
        assert action[64 * k : 64 * (k + 1), 0].std() > 0.1
    assert (np.abs(agent.action) <= 1).all()  # replay keeps the [-1, 1] action


def test_temperature_moves_towards_the_target_entropy():
    """Member 0 tunes alpha, member 1 keeps its fixed one."""
    agent = make_agent({"auto_alpha": True, "alpha": 0.5}, {"auto_alpha": False, "alpha": 0.2})
    fill(agent, 16)
    before = agent.log_alpha[0].item()
    agent.target_entropy = 100.0  # far above the policy's entropy: alpha must grow
    train_step(agent)
    assert agent.log_alpha[0].item() > before
    agent.target_entropy = -100.0  # far below: alpha must shrink
    before = agent.log_alpha[0].item()
    train_step(agent)
    assert agent.log_alpha[0].item() < before
    assert agent.log_alpha[1].item() == pytest.approx(math.log(0.2))


def test_polyak_targets_with_each_members_tau():
    agent = make_agent({"tau": 0.1}, {"tau": 0.5})
    fill(agent, 16)
    old = agent.critic_target.flat.clone()
    train_step(agent)
    for k, tau in enumerate((0.1, 0.5)):
        expected = tau * agent.critic.flat[k] + (1 - tau) * old[k]
        torch.testing.assert_close(agent.critic_target.flat[k], expected)
        assert not torch.equal(agent.critic_target.flat[k], old[k])


def test_each_member_keeps_its_schedule_and_a_stopped_one_is_left_alone():
    agent = make_agent(
        {"learning_starts": 8, "training_frequency": 4, "training_iter": 3},
        {"learning_starts": 4, "training_frequency": 2, "training_iter": 1},
        {},
        num_envs=2,
    )
    agent.active[2] = False
    steps = np.zeros(3, int)
    sample = agent.memory.sample

    def counted(members, batch_size):
        np.add.at(steps, members, 1)
        return sample(members, batch_size)

    agent.memory.sample = counted
    stopped = [x.flat[2].clone() for x in (agent.actor, agent.critic, agent.critic_target)]
    generator = agent.actor.generators[2].get_state()
    obs, zeros, trained = np.zeros((6, 3), np.float32), np.zeros(6, bool), []
    for frame in range(2, 21, 2):
        agent.act(obs)
        agent.observe(obs, np.ones(6, np.float32), zeros, zeros, None)
        out = agent.update(np.full(3, frame))
        trained.append(None if out is None else tuple(np.isfinite(out["q_loss"])))
    # member 0 at frames 8, 12, 16, 20 (3 steps each), member 1 at every frame from 4
    both, one = (True, True, False), (False, True, False)
    assert trained == [None, one, one, both, one, both, one, both, one, both]
    assert list(steps) == [12, 9, 0]
    assert agent.memory.sizes[2] == 0
    assert torch.equal(agent.actor.generators[2].get_state(), generator)  # drew nothing
    for x, before in zip((agent.actor, agent.critic, agent.critic_target), stopped, strict=True):
        assert torch.equal(x.flat[2], before)


def test_a_member_whose_loss_is_not_finite_fails_alone():
    agent = make_agent({"learning_starts": 0}, {"learning_starts": 0})
    fill(agent, 8)
    with torch.no_grad():
        agent.critic.flat[1] = float("nan")
    before = agent.actor.flat.clone()
    out = agent.update(np.array([9, 9]))
    assert np.isnan(out["failed"][1]) and out["failed"][0] == 0
    assert agent.active.tensor.tolist() == agent.active.host.tolist() == [True, False]
    assert torch.isfinite(agent.actor.flat[0]).all()
    assert not torch.equal(agent.actor.flat[0], before[0])  # member 0 trained on
    assert torch.equal(agent.actor.flat[1], before[1])


def test_a_member_state_resumes_exactly_in_another_slot():
    """Member 1 of one population, saved and loaded into slot 0 of another, acts and trains
    as it would have: the same actions, batches, losses and weights."""
    members = ({"learning_starts": 4}, {"learning_starts": 6, "lr": 1e-3})
    agent = make_agent(*members, num_envs=2)
    obs = fill(agent, 20)
    agent.update(np.array([20, 20]))
    other = make_agent(members[1], {}, num_envs=2)
    other.load_member_state(0, agent.member_state(1))
    assert other.memory.sizes[0] == 20 and other.frames[0] == 20
    for frame in (22, 24):
        a, b = agent.act(obs), other.act(obs[[2, 3, 0, 1]])
        np.testing.assert_array_equal(a[2:], b[:2])
        agent.observe(obs, np.ones(4, np.float32), np.zeros(4, bool), np.zeros(4, bool), None)
        other.observe(obs[[2, 3, 0, 1]], np.ones(4, np.float32), np.zeros(4, bool),
                      np.zeros(4, bool), None)  # fmt: skip
        out_a, out_b = agent.update(np.full(2, frame)), other.update(np.full(2, frame))
        assert out_a["q_loss"][1] == pytest.approx(out_b["q_loss"][0], rel=1e-6)
    for name in ("actor", "critic", "critic_target"):
        # member 1 of two training, or member 0 alone: float sums in another order
        a, b = getattr(agent, name).flat[1], getattr(other, name).flat[0]
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert other.log_alpha[0].item() == pytest.approx(agent.log_alpha[1].item(), abs=1e-7)


def test_two_members_learn_a_one_step_continuous_bandit():
    """Reward -(a - 0.5)^2 in one-step episodes: each member's mean action goes to 0.5."""
    overrides = {"learning_starts": 64, "batch_size": 64, "training_frequency": 8,
                 "training_iter": 2}  # fmt: skip
    agent = make_agent(overrides | {"lr": 3e-3}, overrides | {"lr": 2e-3}, num_envs=8,
                       low=(-1.0,), high=(1.0,))  # fmt: skip
    obs, done = np.zeros((16, 3), np.float32), np.ones(16, bool)
    for frame in range(8, 1201, 8):
        action = agent.act(obs)
        agent.observe(obs, -((action[:, 0] - 0.5) ** 2), done, ~done, None)
        agent.update(np.full(2, frame))
    for k in (0, 1):
        assert agent.greedy(np.zeros((1, 3), np.float32), k)[0, 0] == pytest.approx(0.5, abs=0.15)


def test_acts_in_a_pendulum_population():
    """Two members in rlhp's vector env of Pendulum: random, then policy actions in [-2, 2],
    every transition of each member in its own ring."""
    overrides = ["algo=sac", "env=pendulum", "algo.learning_starts=8", "algo.batch_size=8",
                 "algo.hid_layers=[16,16]", "algo.memory_size=1000", "env.num_envs=2"]  # fmt: skip
    cfg = config(*overrides)
    env = VecEnv(cfg, [0.99, 0.9], members=2)
    agent = SAC([cfg.algo, cfg.algo], env, "mlp", 1000, CPU)
    for k in (0, 1):
        agent.set_member(k, cfg.algo, seed=k)
    obs, frames = env.reset([0, 1]), np.zeros(2, np.int64)
    for _ in range(6):
        action = agent.act(obs)
        assert action.shape == (4, 1) and (np.abs(action) <= 2).all()
        obs, reward, terminated, truncated, final_obs = env.step(action)
        agent.observe(obs, reward, terminated, truncated, final_obs)
        frames += 2
        out = agent.update(frames)
    assert out is not None and np.isfinite(out["q_loss"]).all()
    assert list(agent.memory.sizes) == [12, 12]
