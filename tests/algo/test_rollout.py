"""Rollout: what PPO and A2C store per step, time-limit bootstrapping, per-member views."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhp.algo.rollout import Rollout


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
