"""GAE and the PPO loss against numbers worked out by hand."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from rlhp.algo.ppo import PPO, ppo_loss
from rlhp.algo.rollout import gae

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def t(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_gae_with_a_done_in_the_middle():
    # two envs, three steps; env 0's episode ends after step 1, env 1 runs through
    gamma, lam = 0.9, 0.8
    rewards = t([1.0, 0.0], [2.0, 0.0], [3.0, 1.0])
    values = t([0.5, 0.0], [1.0, 0.0], [1.5, 0.0])
    dones = t([0.0, 0.0], [1.0, 0.0], [0.0, 0.0])
    last_value = t(2.0, 1.0)
    adv, ret = gae(rewards, values, dones, last_value, gamma, lam)

    # env 0, backwards:
    # t=2: delta = 3 + 0.9 * 2.0 - 1.5 = 3.3;              A = 3.3
    # t=1: done, delta = 2 - 1.0 = 1.0;                    A = 1.0 (no look past the end)
    # t=0: delta = 1 + 0.9 * 1.0 - 0.5 = 1.4;              A = 1.4 + 0.9 * 0.8 * 1.0 = 2.12
    # env 1:
    # t=2: delta = 1 + 0.9 * 1.0 - 0 = 1.9;                A = 1.9
    # t=1: delta = 0;                                      A = 0.72 * 1.9 = 1.368
    # t=0: delta = 0;                                      A = 0.72 * 1.368 = 0.98496
    expected = t([2.12, 0.98496], [1.0, 1.368], [3.3, 1.9])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)
    torch.testing.assert_close(ret[:, 0], t(2.62, 2.0, 4.8))


def test_gae_lambda_limits():
    gamma = 0.5
    rewards = t([1.0], [2.0], [4.0])
    values = t([1.0], [1.0], [2.0])
    dones = t([0.0], [0.0], [0.0])
    last_value = t(8.0)
    # lam = 0: the one-step TD errors r + gamma V' - V
    adv, _ = gae(rewards, values, dones, last_value, gamma, 0.0)
    torch.testing.assert_close(adv[:, 0], t(1 + 0.5 - 1, 2 + 1 - 1, 4 + 4 - 2))
    # lam = 1: the discounted return bootstrapped from last_value, minus V
    _, ret = gae(rewards, values, dones, last_value, gamma, 1.0)
    torch.testing.assert_close(ret[:, 0], t(1 + 0.5 * 2 + 0.25 * 4 + 0.125 * 8, 2 + 2 + 2, 4 + 4))


def test_gae_done_at_the_last_step_ignores_last_value():
    adv, _ = gae(t([1.0]), t([0.25]), t([1.0]), t(100.0), 0.99, 0.95)
    torch.testing.assert_close(adv, t([0.75]))


def loss_inputs():
    # ratios 1.1 (inside the 0.2 clip range), 1.5 (above) and 0.5 (below), with
    # positive and negative advantages
    ratio = t(1.1, 1.5, 1.5, 0.5, 0.5)
    adv = t(2.0, 2.0, -1.0, 2.0, -1.0)
    old_logp = t(-1.0, -0.5, -2.0, -0.7, -1.2)
    logp = (old_logp + ratio.log()).requires_grad_()
    return logp, old_logp, adv


def test_policy_loss_inside_and_outside_the_clip_range():
    logp, old_logp, adv = loss_inputs()
    zeros = torch.zeros(5, dtype=torch.float64)
    policy_loss, _ = ppo_loss(logp, old_logp, adv, zeros, zeros, zeros, 0.2, False)
    # min(r A, clip(r, 0.8, 1.2) A) per sample:
    #   1.1 *  2 = 2.2   (inside)
    #   min(3.0, 2.4) = 2.4     (clipped above, positive advantage)
    #   min(-1.5, -1.2) = -1.5  (above, negative advantage: not clipped)
    #   min(1.0, 1.6) = 1.0     (below, positive advantage: not clipped)
    #   min(-0.5, -0.8) = -0.8  (clipped below, negative advantage)
    surrogate = [2.2, 2.4, -1.5, 1.0, -0.8]
    assert policy_loss.item() == pytest.approx(-sum(surrogate) / 5)
    # clipped samples give no gradient; the others d(-r A / 5)/dlogp = -r A / 5
    policy_loss.backward()
    expected = t(-1.1 * 2 / 5, 0.0, 1.5 / 5, -0.5 * 2 / 5, 0.0)
    torch.testing.assert_close(logp.grad, expected)


def test_policy_loss_with_ratio_one_is_minus_mean_advantage():
    logp = t(-0.3, -1.0, -2.0)
    adv = t(1.0, -4.0, 0.5)
    zeros = torch.zeros(3, dtype=torch.float64)
    policy_loss, _ = ppo_loss(logp, logp.clone(), adv, zeros, zeros, zeros, 0.1, True)
    assert policy_loss.item() == pytest.approx(-(1.0 - 4.0 + 0.5) / 3)


@pytest.mark.parametrize("clip_vloss", [False, True])
def test_value_loss_with_and_without_clipping(clip_vloss):
    zeros = torch.zeros(3, dtype=torch.float64)
    old_value = t(0.0, 0.0, 0.0)
    value = t(1.0, 0.1, -1.0)
    returns = t(1.0, 1.0, 1.0)
    _, value_loss = ppo_loss(zeros, zeros, zeros, value, old_value, returns, 0.2, clip_vloss)
    # unclipped squared errors: 0, 0.81, 4
    # clipped values old + clamp(v - old, -0.2, 0.2) = 0.2, 0.1, -0.2 -> errors 0.64, 0.81, 1.44
    # clipping takes the larger error per sample: 0.64, 0.81, 4
    errors = [0.64, 0.81, 4.0] if clip_vloss else [0.0, 0.81, 4.0]
    assert value_loss.item() == pytest.approx(0.5 * sum(errors) / 3)


class FakeVecEnv:
    """What PPO reads from a VecEnv: the number of envs and the spaces."""

    num_envs = 2
    observation_space = gym.spaces.Box(-1, 1, (3,))
    action_space = gym.spaces.Discrete(2)


def make_agent(**overrides) -> PPO:
    cfg = OmegaConf.merge(OmegaConf.load(CONF_DIR / "algo" / "ppo.yaml"), overrides)
    agent = PPO([cfg], FakeVecEnv(), "mlp", max_frame=1000, device=torch.device("cpu"))
    agent.set_member(0, cfg, seed=0)
    return agent


def test_time_limit_bootstraps_from_the_final_observation():
    torch.manual_seed(0)
    agent = make_agent(time_horizon=4, gamma=0.9)
    obs = np.zeros((2, 3), np.float32)
    agent.act(obs)
    final_obs = np.array([[0.5, -0.5, 0.25], [0.1, 0.2, 0.3]], np.float32)
    truncated = np.array([True, True])
    terminated = np.array([False, True])  # env 1 both terminated and truncated: no bootstrap
    agent.observe(obs, np.array([1.0, 1.0]), terminated, truncated, final_obs)
    with torch.no_grad():
        v0 = agent.model.value(torch.as_tensor(final_obs[None, :1])).item()
    assert agent.rollout.rewards[0, 0].item() == pytest.approx(1.0 + 0.9 * v0, rel=1e-5)
    assert agent.rollout.rewards[0, 1].item() == 1.0
    assert agent.rollout.dones[0].tolist() == [1.0, 1.0]


def test_a_non_finite_loss_fails_the_member_and_freezes_it():
    agent = make_agent(time_horizon=2, minibatch_size=4, training_epoch=1)
    obs = np.zeros((2, 3), np.float32)
    no = np.array([False, False])
    for reward in ([1.0, 0.0], [float("nan"), 0.0]):
        agent.act(obs)
        agent.observe(obs, np.array(reward), no, no, None)
    before = agent.model.flat.clone()
    result = agent.update(frames=np.array([4]))
    assert np.isnan(result["failed"][0])
    assert not agent.active.tensor[0] and not agent.active.host[0]
    torch.testing.assert_close(agent.model.flat, before)  # lr 0: left as it was
