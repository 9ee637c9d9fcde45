"""Rollout: what PPO and A2C store per step, time-limit bootstrapping, flat views."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhp.algo.rollout import Rollout


def make(net: str = "mlp", obs_shape=(3,)) -> Rollout:
    obs_space = gym.spaces.Box(0, 255, obs_shape)
    return Rollout(2, 3, obs_space, gym.spaces.Discrete(4), net, torch.device("cpu"))


def test_outcome_bootstraps_only_time_limits():
    rollout = make()
    value = lambda obs: obs.sum(-1)  # noqa: E731  V(s) = sum of the obs
    obs = np.zeros((3, 3), np.float32)
    final = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.float32)
    rollout.add(rollout.tensor(obs), torch.tensor([0, 1, 2]))
    terminated = np.array([False, True, False])
    truncated = np.array([True, True, False])  # env 0 cut by a time limit, env 1 also ended
    rollout.add_outcome(
        obs + 1, np.array([1.0, 2.0, 3.0]), terminated, truncated, final, value, 0.5
    )
    # env 0: 1 + 0.5 * V([1, 2, 3]) = 4; env 1 terminated: no bootstrap; env 2 goes on
    np.testing.assert_allclose(rollout.rewards[0].numpy(), [4.0, 2.0, 3.0])
    np.testing.assert_array_equal(rollout.dones[0].numpy(), [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(rollout.next_obs.numpy(), obs + 1)
    assert rollout.step == 1 and not rollout.full


def test_fills_to_full_and_flattens_env_major_within_each_step():
    rollout = make()
    for t in range(2):
        obs = np.full((3, 3), t, np.float32) + np.arange(3)[:, None] * 10
        rollout.add(rollout.tensor(obs), torch.tensor([t, t, t]), torch.ones(3) * t, torch.zeros(3))
        no = np.zeros(3, bool)
        rollout.add_outcome(obs, np.zeros(3), no, no, None, lambda o: pytest.fail(), 0.9)
    assert rollout.full
    flat = rollout.flat(rollout.obs)
    assert flat.shape == (6, 3)
    # row t * num_envs + env holds step t of env
    np.testing.assert_array_equal(flat[:, 0].numpy(), [0, 10, 20, 1, 11, 21])
    np.testing.assert_array_equal(rollout.flat(rollout.logps).numpy(), [0, 0, 0, 1, 1, 1])


def test_atari_frames_stay_uint8():
    rollout = make("cnn", (4, 84, 84))
    assert rollout.obs.dtype == torch.uint8
    assert rollout.obs.shape == (2, 3, 4, 84, 84)
