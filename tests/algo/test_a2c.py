"""A2C: GAE against hand-computed n-step returns and TD errors, bootstrapping at time limits,
one gradient step per rollout, and that the policy gradient moves towards better actions."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhp.algo.a2c import A2C
from rlhp.algo.rollout import gae

from ._stubs import algo_config, vec_env


def make_agent(num_envs=2, action_space=None, **overrides) -> A2C:
    cfg = algo_config("a2c", overrides)
    env = vec_env(num_envs, action_space or gym.spaces.Discrete(2))
    agent = A2C([cfg], env, "mlp", 10_000, torch.device("cpu"))
    agent.set_member(0, cfg, seed=0)
    return agent


# one env, 3 steps; the episode ends after step 1
R = torch.tensor([[1.0], [2.0], [3.0]])
V = torch.tensor([[0.5], [1.0], [1.5]])
D = torch.tensor([[0.0], [1.0], [0.0]])
LAST_V, G = torch.tensor([2.0]), 0.9


def test_gae_with_lambda_one_is_the_n_step_return():
    adv, ret = gae(R, V, D, LAST_V, G, lam=1.0)
    # step 2 bootstraps from V(s_3) = 2; steps 0-1 end with the episode at step 1
    by_hand = [1.0 + 0.9 * 2.0, 2.0, 3.0 + 0.9 * 2.0]
    np.testing.assert_allclose(ret[:, 0].numpy(), by_hand, rtol=1e-6)
    np.testing.assert_allclose(adv[:, 0].numpy(), np.array(by_hand) - [0.5, 1.0, 1.5], rtol=1e-6)


def test_gae_with_lambda_zero_is_the_td_error():
    adv, _ = gae(R, V, D, LAST_V, G, lam=0.0)
    by_hand = [1.0 + 0.9 * 1.0 - 0.5, 2.0 - 1.0, 3.0 + 0.9 * 2.0 - 1.5]
    np.testing.assert_allclose(adv[:, 0].numpy(), by_hand, rtol=1e-6)


def test_gae_with_lambda_between():
    adv, _ = gae(R, V, D, LAST_V, G, lam=0.5)
    d0, d1 = 1.0 + 0.9 * 1.0 - 0.5, 2.0 - 1.0
    assert adv[0, 0].item() == pytest.approx(d0 + 0.9 * 0.5 * d1)


def test_time_limit_bootstraps_from_the_final_obs():
    agent = make_agent(num_envs=2, time_horizon=4, gamma=0.9)
    obs = np.zeros((2, 2), np.float32)
    final = np.array([[0.3, -0.2], [0.0, 0.0]], np.float32)
    agent.act(obs)
    agent.observe(
        obs, np.array([1.0, 1.0]), np.array([False, True]), np.array([True, False]), final
    )
    v = agent.model.value(torch.as_tensor(final[None, :1])).item()
    np.testing.assert_allclose(agent.rollout.rewards[0].numpy(), [1.0 + 0.9 * v, 1.0], rtol=1e-5)
    np.testing.assert_array_equal(agent.rollout.dones[0].numpy(), [1.0, 1.0])


def test_one_gradient_step_per_rollout():
    agent = make_agent(num_envs=2, time_horizon=3)
    steps = []
    step = agent.optimizer.step
    agent.optimizer.step = lambda *args: (steps.append(1), step(*args))[1]
    obs, zeros = np.zeros((2, 2), np.float32), np.zeros(2, bool)
    results = []
    for frame in range(2, 13, 2):
        assert agent.at_boundary == (frame % 6 == 2)
        agent.act(obs)
        agent.observe(obs, np.ones(2), zeros, zeros, None)
        results.append(agent.update(np.array([frame])))
    assert [r is not None for r in results] == [False, False, True] * 2
    assert len(steps) == 2 and agent.at_boundary
    assert set(results[2]) == {"policy_loss", "value_loss", "entropy", "lr", "failed"}


@pytest.mark.parametrize("continuous", [False, True])
def test_policy_moves_towards_the_better_action(continuous):
    """A one-step bandit: reward = 1 for action 1 (discrete) or -(a - 1)^2 (continuous)."""
    space = gym.spaces.Box(-2, 2, (1,)) if continuous else None
    agent = make_agent(num_envs=16, action_space=space, time_horizon=4, lr=3e-3)
    obs, done = np.zeros((16, 2), np.float32), np.ones(16, bool)
    for frame in range(16, 16 * 200 + 1, 16):
        action = agent.act(obs)
        reward = -((action[:, 0] - 1.0) ** 2) if continuous else (action == 1).astype(float)
        agent.observe(obs, reward, done, ~done, None)
        agent.update(np.array([frame]))
    dist = agent.model.distribution(agent.model.logits(torch.zeros(1, 1, 2)))
    if continuous:
        assert dist.mean.item() == pytest.approx(1.0, abs=0.3)
    else:
        assert dist.probs[0, 0, 1].item() > 0.9
