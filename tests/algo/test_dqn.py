"""DQN: the (double) TD target by hand, the agent's use of its two networks, the epsilon and
training schedules in frames, and a state_dict that carries the replay memory."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlhp.algo.dqn import DQN, td_target

from ._stubs import algo_config, vec_env


def make_agent(num_envs=1, obs_dim=1, n_actions=2, max_frame=1000, **overrides) -> DQN:
    cfg = algo_config("dqn", overrides)
    env = vec_env(num_envs, gym.spaces.Discrete(n_actions), obs_dim)
    return DQN(cfg, env, "mlp", max_frame, torch.device("cpu"))


class Table(nn.Module):
    """Q-values looked up by the integer in obs[:, 0]."""

    def __init__(self, rows):
        super().__init__()
        self.rows = torch.tensor(rows, dtype=torch.float32)

    def forward(self, obs):
        return self.rows[obs[:, 0].long()]


# two transitions: s'_0 (not terminal) and s'_1 (terminal)
REWARD, TERMINATED, GAMMA = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 1.0]), 0.9
Q_TARGET = [[1.0, 5.0], [2.0, 3.0]]  # Q_target(s'_i, a)
Q_ONLINE = [[4.0, 0.0], [1.0, 2.0]]  # Q_online(s'_i, a): prefers a = 0 in s'_0
DQN_Y = [1.0 + 0.9 * 5.0, 0.5]  # max_a Q_target(s'_0, a) = 5
DOUBLE_Y = [1.0 + 0.9 * 1.0, 0.5]  # Q_target(s'_0, argmax_a Q_online(s'_0, a) = 0) = 1


def test_td_target_by_hand():
    y = td_target(REWARD, TERMINATED, torch.tensor(Q_TARGET), None, GAMMA)
    np.testing.assert_allclose(y.numpy(), DQN_Y)
    y = td_target(REWARD, TERMINATED, torch.tensor(Q_TARGET), torch.tensor(Q_ONLINE), GAMMA)
    np.testing.assert_allclose(y.numpy(), DOUBLE_Y)


@pytest.mark.parametrize("double, expected", [(False, DQN_Y), (True, DOUBLE_Y)])
def test_agent_target_uses_online_net_to_choose_and_target_net_to_evaluate(double, expected):
    agent = make_agent(double=double, gamma=GAMMA)
    agent.q_net, agent.target_net = Table(Q_ONLINE), Table(Q_TARGET)
    batch = {"reward": REWARD, "terminated": TERMINATED, "next_obs": torch.tensor([[0.0], [1.0]])}
    np.testing.assert_allclose(agent.target(batch).numpy(), expected)


def test_epsilon_follows_explore_var_spec_in_frames():
    agent = make_agent(explore_var_spec={"start": 0.5, "end": 0.1, "end_step": 100})
    for frame, epsilon in ((0, 0.5), (50, 0.5 + 0.5 * (0.1 - 0.5)), (100, 0.1), (400, 0.1)):
        agent.frame = frame
        assert agent.epsilon == pytest.approx(epsilon)


def test_acts_greedily_at_zero_epsilon_and_randomly_at_one():
    agent = make_agent(num_envs=64, explore_var_spec={"start": 0.0, "end": 0.0, "end_step": 1})
    agent.q_net = Table([[0.0, 1.0]] * 2)
    obs = np.zeros((64, 1), np.float32)
    assert (agent.act(obs) == 1).all()
    agent.cfg.explore_var_spec = {"start": 1.0, "end": 1.0, "end_step": 1}
    np.random.seed(0)
    assert 10 < (agent.act(obs) == 0).sum() < 54


def test_training_and_target_schedules_count_frames():
    agent = make_agent(
        num_envs=4,
        learning_starts=16,
        training_frequency=8,
        training_iter=3,
        target_update_frequency=20,
        batch_size=4,
    )
    steps, syncs = [], []
    agent.optimizer.step = lambda: steps.append(1)
    original = agent.target_net.parameters
    agent.target_net.parameters = lambda: (syncs.append(1), original())[1]
    obs, zeros = np.zeros((4, 1), np.float32), np.zeros(4, bool)
    trained_at = []
    for frame in range(4, 65, 4):  # 16 vector steps of 4 envs
        agent.act(obs)
        agent.observe(obs, np.zeros(4), zeros, zeros, None)
        if agent.update(frame) is not None:
            trained_at.append(frame)
    # from frame 16 on, every 8 frames: 16, 24, ..., 64 -> 7 training steps of 3
    assert trained_at == [16, 24, 32, 40, 48, 56, 64]
    assert len(steps) == 7 * 3
    assert len(syncs) == 3  # frames 20, 40, 60
    assert len(agent.memory) == 64


def test_lr_anneals_linearly_to_zero():
    agent = make_agent(learning_starts=0, training_frequency=1, lr_anneal=True, lr=1e-3)
    obs, zeros = np.zeros((1, 1), np.float32), np.zeros(1, bool)
    agent.act(obs)
    agent.observe(obs, np.zeros(1), zeros, zeros, None)
    assert agent.update(250)["lr"] == pytest.approx(0.75e-3)  # max_frame 1000
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(0.75e-3)


def test_hard_and_soft_target_updates():
    for tau in (1.0, 0.25):
        agent = make_agent(learning_starts=0, training_frequency=10**9, target_update_frequency=1)
        agent.cfg.tau = tau
        old = [p.clone() for p in agent.target_net.parameters()]
        with torch.no_grad():
            for p in agent.q_net.parameters():
                p.add_(1.0)
        agent.update(1)
        for t, q, o in zip(
            agent.target_net.parameters(), agent.q_net.parameters(), old, strict=True
        ):
            torch.testing.assert_close(t, tau * q + (1 - tau) * o)


def test_fits_a_one_step_problem():
    """Action 1 pays 1, action 0 pays 0, every episode one step: Q(s, .) -> (0, 1)."""
    agent = make_agent(
        num_envs=8,
        learning_starts=64,
        training_frequency=8,
        training_iter=2,
        batch_size=32,
        lr=1e-2,
        target_update_frequency=64,
        prioritized=True,
        double=True,
    )
    torch.manual_seed(0)
    np.random.seed(0)
    obs, done = np.zeros((8, 1), np.float32), np.ones(8, bool)
    for frame in range(8, 1201, 8):
        action = agent.act(obs)
        agent.observe(obs, action.astype(np.float32), done, ~done, None)
        agent.update(frame)
    q = agent.q_net(torch.zeros(1, 1))[0].detach().numpy()
    np.testing.assert_allclose(q, [0.0, 1.0], atol=0.1)
    assert agent.epsilon < 1.0


def test_state_dict_carries_nets_optimizer_and_replay():
    agent = make_agent(num_envs=2, learning_starts=4, training_frequency=2, batch_size=4)
    obs, zeros = np.random.randn(2, 1).astype(np.float32), np.zeros(2, bool)
    for frame in range(2, 41, 2):
        agent.act(obs)
        agent.observe(obs, np.ones(2), zeros, zeros, None)
        agent.update(frame)
    other = make_agent(num_envs=2, learning_starts=4, training_frequency=2, batch_size=4)
    other.load_state_dict(agent.state_dict())
    assert len(other.memory) == len(agent.memory) == 40
    assert other.frame == 40
    x = torch.randn(5, 1)
    torch.testing.assert_close(other.q_net(x), agent.q_net(x))
    torch.testing.assert_close(other.target_net(x), agent.target_net(x))
    assert (
        other.optimizer.state_dict()["state"][0]["step"]
        == agent.optimizer.state_dict()["state"][0]["step"]
    )
