"""REINFORCE: discounted returns by hand, episodes assembled per env, bootstrapping at time
limits with a baseline, a gradient step per batch of episodes, and learning a bandit."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhp.algo.reinforce import REINFORCE, discounted_returns

from ._stubs import algo_config, vec_env


def make_agent(num_envs=2, action_space=None, **overrides) -> REINFORCE:
    cfg = algo_config("reinforce", overrides)
    env = vec_env(num_envs, action_space or gym.spaces.Discrete(3))
    return REINFORCE(cfg, env, "mlp", 10_000, torch.device("cpu"))


def test_discounted_returns_by_hand():
    np.testing.assert_allclose(discounted_returns(np.array([1.0, 2.0, 3.0]), 0.5), [2.75, 3.5, 3])
    np.testing.assert_allclose(
        discounted_returns(np.array([1.0, 2.0]), 0.5, last_value=4.0), [1 + 0.5 * 2 + 0.25 * 4, 4]
    )


def test_episodes_are_assembled_per_env_and_trained_in_batches():
    agent = make_agent(num_envs=2, batch_episodes=2, gamma=0.5, baseline=True)
    steps = []
    step = agent.optimizer.step
    agent.optimizer.step = lambda: (steps.append(1), step())[1]
    # env 0: episodes of 2 then 1 steps (terminal); env 1: one of 3 steps cut by a time limit
    term = [[False, False], [True, False], [True, False]]
    trunc = [[False, False], [False, False], [False, True]]
    final = np.array([[0.0, 0.0], [0.5, 0.5]], np.float32)
    results = []
    for t in range(3):
        obs = np.array([[t, 0.0], [t, 1.0]], np.float32)
        agent.act(obs)
        agent.observe(obs, np.array([1.0, 2.0]), np.array(term[t]), np.array(trunc[t]), final)
        if t == 2:  # before the update: the three ended episodes wait for training
            lengths = sorted(len(ep[2]) for ep in agent.batch)
            assert lengths == [1, 2, 3] and not agent.at_boundary
            v = agent.model.value(torch.as_tensor(final[1:])).item()
            cut = next(ep for ep in agent.batch if len(ep[2]) == 3)
            np.testing.assert_allclose(cut[2], discounted_returns(np.full(3, 2.0), 0.5, v))
            np.testing.assert_array_equal(cut[0][:, 1], [1.0, 1.0, 1.0])
        results.append(agent.update(3 * 2 * (t + 1)))
    assert [r is not None for r in results] == [False, False, True]
    assert len(steps) == 1 and agent.at_boundary and agent.running[0] == ([], [], [])


@pytest.mark.parametrize("baseline", [True, False])
def test_learns_a_bandit(baseline):
    """One-step episodes, reward = 1 for action 2 only: its probability goes up."""
    agent = make_agent(num_envs=16, batch_episodes=16, lr=1e-2, baseline=baseline)
    torch.manual_seed(0)
    obs, done = np.zeros((16, 2), np.float32), np.ones(16, bool)
    for frame in range(16, 16 * 100 + 1, 16):
        action = agent.act(obs)
        agent.observe(obs, (action == 2).astype(float), done, ~done, None)
        agent.update(frame)
    assert agent.model.dist(torch.zeros(1, 2)).probs[0, 2].item() > 0.9


def test_continuous_actions():
    agent = make_agent(num_envs=16, action_space=gym.spaces.Box(-2, 2, (1,)), batch_episodes=16)
    agent.cfg.lr = 1e-2
    for group in agent.optimizer.param_groups:
        group["lr"] = 1e-2
    torch.manual_seed(0)
    obs, done = np.zeros((16, 2), np.float32), np.ones(16, bool)
    for frame in range(16, 16 * 200 + 1, 16):
        action = agent.act(obs)
        agent.observe(obs, -((action[:, 0] - 1.0) ** 2), done, ~done, None)
        agent.update(frame)
    assert agent.model.dist(torch.zeros(1, 2)).mean.item() == pytest.approx(1.0, abs=0.3)
