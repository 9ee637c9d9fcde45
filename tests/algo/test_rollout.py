"""Rollout: what PPO and A2C store per step, time-limit bootstrapping, per-member views."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhp.algo.a2c import A2C
from rlhp.algo.ppo import PPO
from rlhp.algo.rollout import Rollout

from ._stubs import algo_config, vec_env


def make(net: str = "mlp", obs_shape=(3,), num_envs=3, members=1) -> Rollout:
    obs_space = gym.spaces.Box(0, 255, obs_shape)
    cpu = torch.device("cpu")
    return Rollout(2, num_envs, obs_space, gym.spaces.Discrete(4), net, cpu, members)


def test_outcome_bootstraps_only_time_limits():
    rollout = make()
    value = lambda obs: obs.sum(-1)  # noqa: E731  V(s) = sum of the obs
    obs = np.zeros((3, 3), np.float32)
    final = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.float32)
    rollout.add(rollout.tensor(obs), torch.tensor([0, 1, 2]))
    terminated = np.array([False, True, False])
    truncated = np.array([True, True, False])  # env 0 cut by a time limit, env 1 also ended
    reward, gamma = np.array([1.0, 2.0, 3.0]), torch.full((3,), 0.5)
    rollout.add_outcome(obs + 1, reward, terminated, truncated, final, value, gamma)
    # env 0: 1 + 0.5 * V([1, 2, 3]) = 4; env 1 terminated: no bootstrap; env 2 goes on
    np.testing.assert_allclose(rollout.rewards[0].numpy(), [4.0, 2.0, 3.0])
    np.testing.assert_array_equal(rollout.dones[0].numpy(), [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(rollout.next_obs.numpy(), obs + 1)
    assert rollout.step == 1 and not rollout.full


def test_fills_to_full_and_gives_each_member_its_steps_in_step_major_order():
    rollout = make(num_envs=2, members=2)  # copies 0, 1: member 0; copies 2, 3: member 1
    for t in range(2):
        obs = np.full((4, 3), t, np.float32) + np.arange(4)[:, None] * 10
        rollout.add(rollout.tensor(obs), torch.tensor([t] * 4), torch.ones(4) * t, torch.zeros(4))
        no = np.zeros(4, bool)
        rollout.add_outcome(obs, np.zeros(4), no, no, None, lambda o: pytest.fail(), torch.ones(4))
    assert rollout.full
    obs = rollout.by_member(rollout.obs)
    assert obs.shape == (2, 4, 3)
    # member k's row t * num_envs + env holds step t of its env
    np.testing.assert_array_equal(obs[0, :, 0].numpy(), [0, 10, 1, 11])
    np.testing.assert_array_equal(obs[1, :, 0].numpy(), [20, 30, 21, 31])
    np.testing.assert_array_equal(rollout.by_member(rollout.logps)[1].numpy(), [0, 0, 1, 1])


def test_atari_frames_stay_uint8():
    rollout = make("cnn", (4, 84, 84))
    assert rollout.obs.dtype == torch.uint8
    assert rollout.obs.shape == (2, 3, 4, 84, 84)


# three members that differ in every per-member hyperparameter both algorithms hold
MEMBERS = [
    {"lr": 1e-3, "gamma": 0.9, "lam": 0.8, "entropy_coef": 0.01, "val_loss_coef": 0.5},
    {"lr": 3e-4, "gamma": 0.99, "lam": 0.95, "entropy_coef": 0.0, "val_loss_coef": 1.0},
    {"lr": 3e-3, "gamma": 0.95, "lam": 1.0, "entropy_coef": 0.1, "val_loss_coef": 0.25},
]


@pytest.mark.parametrize("agent_cls", [PPO, A2C])
def test_an_idle_member_costs_nothing_and_changes_nothing(agent_cls):
    """Member 1 of three is idle with NaN weights: it is not forwarded, sampled or updated (no
    NaN reaches the rollout, its optimiser state and generator stay as they were), and
    members 0 and 2 act and train as in a population of the two of them."""
    n, horizon = 2, 4
    structure = {"time_horizon": horizon, "minibatch_size": 4, "training_epoch": 2}
    cfgs = [algo_config(agent_cls.__name__.lower(), structure, m) for m in MEMBERS]
    env = vec_env(n, gym.spaces.Discrete(2), obs_dim=3)
    three = agent_cls(cfgs, env, "mlp", 10_000, torch.device("cpu"))
    two = agent_cls([cfgs[0], cfgs[2]], env, "mlp", 10_000, torch.device("cpu"))
    for k, seed in enumerate([0, 5, 7]):
        three.set_member(k, cfgs[k], seed)
    two.set_member(0, cfgs[0], 0)
    two.set_member(1, cfgs[2], 7)
    three.active[1] = False
    three.model.flat[1] = float("nan")
    idle = [three.model.generators[1].get_state(), three.optimizer.member_state(1)]
    rng, mine = np.random.default_rng(0), np.r_[0:n, 2 * n : 3 * n]
    for _ in range(horizon):
        obs = rng.normal(size=(3 * n, 3)).astype(np.float32)
        np.testing.assert_array_equal(three.act(obs)[mine], two.act(obs[mine]))
        reward, no = rng.normal(size=3 * n), np.zeros(3 * n, bool)
        three.observe(obs, reward, no, no, None)
        two.observe(obs[mine], reward[mine], no[mine], no[mine], None)
    stats = three.update(np.full(3, horizon * n))
    ref = two.update(np.full(2, horizon * n))
    assert torch.isfinite(three.rollout.logps).all() and torch.isfinite(three.rollout.values).all()
    assert (stats["failed"] == 0).all() and np.isnan(stats["policy_loss"][1])
    np.testing.assert_allclose(stats["policy_loss"][[0, 2]], ref["policy_loss"], rtol=1e-5)
    torch.testing.assert_close(three.model.flat[[0, 2]], two.model.flat)
    assert torch.isnan(three.model.flat[1]).all()
    assert torch.equal(three.model.generators[1].get_state(), idle[0])
    for key, value in three.optimizer.member_state(1).items():
        assert torch.equal(value, idle[1][key]), key
