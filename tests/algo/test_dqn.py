"""DQN as a stacked agent: the (double) TD target by hand, each member's own schedules (training
steps, target updates, epsilon, lr) in its own frames, its own exploration draws, failure of one
member alone, member states that resume exactly, and learning a one-step problem."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhp.algo._schedule import crossed, updates_due
from rlhp.algo.dqn import DQN, epsilon, steps_due, targets_due, td_target

from ._stubs import algo_config, vec_env

CPU = torch.device("cpu")
SMALL = {"hid_layers": [16], "memory_size": 1000, "batch_size": 8}


def make_agent(*members: dict, num_envs=1, n_actions=2, max_frame=1000, **shared) -> DQN:
    """One member per dict of overrides (on top of `shared`), member k seeded with k."""
    cfgs = [algo_config("dqn", SMALL, shared, m) for m in members or ({},)]
    env = vec_env(num_envs, gym.spaces.Discrete(n_actions), obs_dim=1)
    agent = DQN(cfgs, env, "mlp", max_frame, CPU)
    for k, cfg in enumerate(cfgs):
        agent.set_member(k, cfg, seed=k)
    return agent


def step(agent: DQN, frames, obs=None, next_obs=None, reward=0.0, done=False) -> dict | None:
    """One vector step of every member (zero observations unless given), then update(frames)."""
    rows = agent.members * agent.num_envs
    obs = np.zeros((rows, 1), np.float32) if obs is None else obs
    next_obs = obs if next_obs is None else next_obs
    flags = np.full(rows, done)
    action = agent.act(obs)
    rewards = np.full(rows, reward, np.float32) if np.isscalar(reward) else reward(action)
    agent.observe(next_obs, rewards, flags, np.zeros(rows, bool), next_obs if done else None)
    return agent.update(np.asarray(frames, np.int64))


# two transitions: s'_0 (not terminal) and s'_1 (terminal)
REWARD, TERMINATED, GAMMA = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 1.0]), 0.9
Q_TARGET = torch.tensor([[1.0, 5.0], [2.0, 3.0]])  # Q_target(s'_i, a)
Q_ONLINE = torch.tensor([[4.0, 0.0], [1.0, 2.0]])  # Q_online(s'_i, a): prefers a = 0 in s'_0
DQN_Y = [1.0 + 0.9 * 5.0, 0.5]  # max_a Q_target(s'_0, a) = 5
DOUBLE_Y = [1.0 + 0.9 * 1.0, 0.5]  # Q_target(s'_0, argmax_a Q_online(s'_0, a) = 0) = 1


def test_td_target_by_hand():
    y = td_target(REWARD, TERMINATED, Q_TARGET, None, GAMMA)
    np.testing.assert_allclose(y.numpy(), DQN_Y)
    y = td_target(REWARD, TERMINATED, Q_TARGET, Q_ONLINE, GAMMA, double=True)
    np.testing.assert_allclose(y.numpy(), DOUBLE_Y)


def test_td_target_takes_each_members_gamma_and_double():
    gamma, double = torch.tensor([[0.9], [0.9], [0.5]]), torch.tensor([[False], [True], [True]])
    y = td_target(
        REWARD, TERMINATED, Q_TARGET.expand(3, 2, 2), Q_ONLINE.expand(3, 2, 2), gamma, double
    )
    np.testing.assert_allclose(y.numpy(), [DQN_Y, DOUBLE_Y, [1.0 + 0.5 * 1.0, 0.5]])


class Table(torch.nn.Module):
    """Q-values looked up by the integer in obs[..., 0], the same for every member."""

    def __init__(self, rows: torch.Tensor):
        super().__init__()
        self.rows = rows

    def forward(self, obs, ks=None):
        return self.rows[obs[..., 0].long()]


def test_agent_target_chooses_with_the_online_net_where_double():
    agent = make_agent({"double": False}, {"double": True}, gamma=GAMMA)
    agent.q_net, agent.target_net = Table(Q_ONLINE), Table(Q_TARGET)
    batch = {
        "reward": REWARD.expand(2, 2),
        "terminated": TERMINATED.expand(2, 2),
        "next_obs": torch.tensor([[0.0], [1.0]]).expand(2, 2, 1),
    }
    np.testing.assert_allclose(agent.target(batch, None).numpy(), [DQN_Y, DOUBLE_Y])


def test_schedules_are_pure_functions_of_each_members_frames():
    hp = {
        "learning_starts": np.array([16.0, 4.0]),
        "training_frequency": np.array([8.0, 4.0]),
        "training_iter": np.array([3.0, 1.0]),
        "target_update_frequency": np.array([20.0, 6.0]),
        "explore_var_spec.start": np.array([0.5, 1.0]),
        "explore_var_spec.end": np.array([0.1, 0.0]),
        "explore_var_spec.end_step": np.array([100.0, 10.0]),
    }
    for last in range(0, 60, 4):
        frames = np.array([last + 4, last + 2])  # member 1 has its own frame count
        lasts = np.array([last, last - 2 if last else 0])
        expected = [
            updates_due(int(lasts[k]), int(frames[k]), *(int(hp[key][k]) for key in
                        ("learning_starts", "training_frequency", "training_iter")))
            for k in range(2)
        ]  # fmt: skip
        np.testing.assert_array_equal(steps_due(lasts, frames, hp), expected)
        due = [frames[k] >= hp["learning_starts"][k]
               and crossed(lasts[k], frames[k], hp["target_update_frequency"][k]) > 0
               for k in range(2)]  # fmt: skip
        np.testing.assert_array_equal(targets_due(lasts, frames, hp), due)
    np.testing.assert_allclose(epsilon(hp, np.array([50, 5])), [0.3, 0.5])
    np.testing.assert_allclose(epsilon(hp, np.array([400, 400])), [0.1, 0.0])


def test_a_gradient_step_moves_only_the_members_due():
    """Member 0 trains from frame 16 every 8 frames, 3 steps each; member 1, started 8 frames
    later, from 4 every 4, one step each: each optimiser step's mask says who moved."""
    agent = make_agent(
        {"learning_starts": 16, "training_frequency": 8, "training_iter": 3},
        {"learning_starts": 4, "training_frequency": 4, "training_iter": 1},
        num_envs=4,
    )
    masks, optimizer_step = [], agent.optimizer.step

    def record(lr, mask=None):  # no mask: every member steps, by its lr (0: did not train)
        masks.append(lr > 0 if mask is None else mask.clone())
        optimizer_step(lr, mask)

    agent.optimizer.step = record
    counts = []
    for t in range(1, 12):
        before = agent.q_net.flat.clone()
        masks.clear()
        out = step(agent, [4 * t, max(4 * t - 8, 0)], reward=1.0)
        counts.append(torch.stack(masks).sum(0).tolist() if masks else [0, 0])
        moved = (agent.q_net.flat != before).any(1).tolist()
        assert moved == [c > 0 for c in counts[-1]]
        if out is not None:
            assert np.isnan(out["q_loss"]).tolist() == [c == 0 for c in counts[-1]]
    assert [c[0] for c in counts] == [3 * (4 * t >= 16 and t % 2 == 0) for t in range(1, 12)]
    assert [c[1] for c in counts] == [int(4 * t - 8 >= 4) for t in range(1, 12)]


def test_targets_move_by_each_members_tau_when_its_update_is_due():
    agent = make_agent(
        {"tau": 1.0, "target_update_frequency": 1},
        {"tau": 0.25, "target_update_frequency": 1},
        {"tau": 0.5, "target_update_frequency": 10**6},  # not due
        learning_starts=0,
        training_frequency=10**6,
    )
    old = agent.target_net.flat.clone()
    torch.testing.assert_close(old, agent.q_net.flat)  # a fresh target is a copy
    with torch.no_grad():
        agent.q_net.flat.add_(1.0)
    assert step(agent, [1, 1, 1]) is None  # no gradient step due
    q, target = agent.q_net.flat, agent.target_net.flat
    torch.testing.assert_close(target[0], q[0])
    torch.testing.assert_close(target[1], 0.25 * q[1] + 0.75 * old[1])
    assert torch.equal(target[2], old[2])


def test_lr_anneals_per_member():
    agent = make_agent(
        {"lr_anneal": True, "lr": 1e-3},
        {"lr_anneal": False, "lr": 2e-3},
        learning_starts=0,
        training_frequency=1,
    )
    out = step(agent, [250, 500])  # max_frame 1000
    np.testing.assert_allclose(out["lr"], [0.75e-3, 2e-3])


def biased(agent: DQN, preferred: list[int]) -> DQN:
    """Member k's Q-values favour action preferred[k] by far."""
    with torch.no_grad():
        for k, a in enumerate(preferred):
            agent.q_net.head.bias[k, 0, a] = 100.0
    return agent


def test_each_member_explores_with_its_epsilon_and_its_own_generator():
    greedy = {"explore_var_spec": {"start": 0.0, "end": 0.0, "end_step": 1}}
    random = {"explore_var_spec": {"start": 1.0, "end": 1.0, "end_step": 1}}
    agent = biased(make_agent(greedy, random, num_envs=64), [1, 1])
    action = agent.act(np.zeros((128, 1), np.float32)).reshape(2, 64)
    assert (action[0] == 1).all()
    assert 10 < (action[1] == 0).sum() < 54
    # member 1's draws depend on its generator only, not on member 0's config or weights
    other = biased(make_agent(random, random, num_envs=64), [0, 1])
    np.testing.assert_array_equal(other.act(np.zeros((128, 1), np.float32))[64:], action[1])
    np.testing.assert_array_equal(agent.greedy(np.zeros((3, 1), np.float32), 0), [1, 1, 1])


def test_a_member_with_a_non_finite_loss_fails_alone():
    members = [{"lr": 1e-3}, {"lr": 2e-3}, {"lr": 3e-3}]
    agent = make_agent(*members, learning_starts=0, training_frequency=1)
    with torch.no_grad():
        agent.q_net.flat[1] = float("nan")
    before = agent.q_net.flat.clone()
    out = step(agent, [1, 1, 1], reward=1.0)
    assert np.isnan(out["failed"][1]) and out["failed"][0] == out["failed"][2] == 0
    assert agent.active.tensor.tolist() == agent.active.host.tolist() == [True, False, True]
    assert (agent.optimizer.exp_avg[1] == 0).all()  # member 1 never stepped
    out = step(agent, [2, 2, 2], reward=1.0)
    assert np.isfinite(out["q_loss"][[0, 2]]).all() and np.isnan(out["q_loss"][1])
    assert not torch.equal(agent.q_net.flat[0], before[0])
    assert agent.memory.sizes.tolist() == [2, 1, 2]  # a failed member's memory stops


def test_member_state_resumes_a_member_exactly_in_another_slot():
    """Member 1 of one population, moved into slot 2 of another mid-run, trains on exactly as
    it would have (weights, target, Adam moments, replay, generators, frame count)."""
    members = [
        {"lr": 1e-3, "prioritized": True, "double": True},
        {"lr": 3e-3, "prioritized": True, "tau": 0.5, "target_update_frequency": 4},
    ]
    shared = {"learning_starts": 4, "training_frequency": 2, "num_envs": 2}
    a = make_agent(*members, **shared)
    b = make_agent(members[0], members[0], members[1], **shared)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(15, 4, 1)).astype(np.float32)  # member 1 of a: obs[:, 2:]
    for t in range(8):
        step(a, [2 * t + 2] * 2, obs[t], obs[t + 1], reward=1.0)
    b.load_member_state(2, a.member_state(1))
    b_obs = np.concatenate([obs, obs[:, 2:]], 1)
    for t in range(8, 14):
        out_a = step(a, [2 * t + 2] * 2, obs[t], obs[t + 1], reward=1.0)
        out_b = step(b, [2 * t + 2] * 3, b_obs[t], b_obs[t + 1], reward=1.0)
        if out_a is not None:
            assert out_b["q_loss"][2] == pytest.approx(out_a["q_loss"][1], rel=1e-6)
    torch.testing.assert_close(b.q_net.flat[2], a.q_net.flat[1])
    torch.testing.assert_close(b.target_net.flat[2], a.target_net.flat[1])
    assert b.memory.sizes[2] == a.memory.sizes[1] == 28


def test_fits_a_one_step_problem():
    """Action 1 pays 1, action 0 pays 0, every episode one step: Q(s, .) -> (0, 1), for a plain
    and a double member with prioritised replay."""
    agent = make_agent(
        {"double": False, "lr": 1e-2},
        {"double": True, "lr": 1e-2, "alpha_per": 0.4, "gamma": 0.9},
        num_envs=8,
        learning_starts=64,
        training_frequency=8,
        training_iter=2,
        batch_size=32,
        target_update_frequency=64,
        prioritized=True,
    )
    for frame in range(8, 1201, 8):
        step(agent, [frame, frame], reward=lambda action: action.astype(np.float32), done=True)
    with torch.no_grad():
        q = agent.q_net(torch.zeros(2, 1, 1))[:, 0].numpy()
    np.testing.assert_allclose(q, [[0.0, 1.0], [0.0, 1.0]], atol=0.1)


def test_an_idle_member_is_not_run_sampled_or_trained():
    agent = make_agent(
        {"lr": 1e-3}, {"lr": 2e-3}, num_envs=2, learning_starts=0, training_frequency=1
    )
    agent.active[1] = False  # a stopped member or an empty slot
    weights, generator = agent.q_net.flat[1].clone(), agent.q_net.generators[1].get_state()
    for frame in (2, 4, 6):
        out = step(agent, [frame, frame], reward=1.0)
        assert (agent.action[2:] == 0).all()
        assert np.isfinite(out["q_loss"][0]) and np.isnan(out["q_loss"][1])
    assert torch.equal(agent.q_net.flat[1], weights)
    assert torch.equal(agent.q_net.generators[1].get_state(), generator)
    assert (agent.optimizer.exp_avg[1] == 0).all()
    assert agent.memory.sizes.tolist() == [6, 0]
