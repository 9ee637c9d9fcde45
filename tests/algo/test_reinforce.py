"""REINFORCE: discounted returns by hand, episodes assembled per env and trained in batches per
member (members train at different steps, the others untouched), bootstrapping at time limits
with a baseline, a failing member, resuming a member's waiting episodes, learning a bandit and
continuous actions. Agents are built on a real rlhp.env.VecEnv (CartPole; Pendulum for Box)."""

import numpy as np
import pytest
import torch
from _members import config

from rlhp.algo.reinforce import REINFORCE, discounted_returns
from rlhp.env import VecEnv


def make_agent(members: list[dict], env="cartpole", num_envs=2, **structure) -> REINFORCE:
    """A REINFORCE population of len(members) members (their algo overrides) on `env`."""
    cfg = config("algo=reinforce", f"env={env}", f"env.num_envs={num_envs}")
    cfg.algo.update(structure | {"hid_layers": [16, 16]})
    cfgs = [cfg.algo.copy() for _ in members]
    for c, overrides in zip(cfgs, members, strict=True):
        c.update(overrides)
    vec_env = VecEnv(cfg, [c.gamma for c in cfgs], members=len(members))
    agent = REINFORCE(cfgs, vec_env, "mlp", 10_000, torch.device("cpu"))
    vec_env.close()
    for k, c in enumerate(cfgs):
        agent.set_member(k, c, seed=k)
    return agent


def test_discounted_returns_by_hand():
    np.testing.assert_allclose(discounted_returns(np.array([1.0, 2.0, 3.0]), 0.5), [2.75, 3.5, 3])
    np.testing.assert_allclose(
        discounted_returns(np.array([1.0, 2.0]), 0.5, last_value=4.0), [1 + 0.5 * 2 + 0.25 * 4, 4]
    )


def test_episodes_are_assembled_per_env_and_trained_in_batches_per_member():
    agent = make_agent([{"batch_episodes": 3, "gamma": 0.5}, {"batch_episodes": 1}])
    # member 0, env 0: episodes of 2 then 1 steps (terminal); env 1: one of 3 steps cut by a
    # time limit; member 1: env 2 ends at the first step
    term = [[0, 0, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0]]
    trunc = [[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]]
    final = np.full((4, 4), 0.5, np.float32)
    opt = agent.optimizer
    state = lambda k: [x[k].clone() for x in (agent.model.flat, opt.exp_avg, opt.exp_avg_sq)]  # noqa: E731
    results, before = [], state(0)
    for t in range(3):
        obs = np.array([[t, j, 0, 0] for j in range(4)], np.float32)
        agent.act(obs)
        terminated, truncated = np.array(term[t], bool), np.array(trunc[t], bool)
        agent.observe(obs, np.array([1.0, 2.0, 3.0, 4.0]), terminated, truncated, final)
        if t == 2:  # before the update: member 0's three ended episodes wait for training
            assert sorted(len(ep[2]) for ep in agent.batch[0]) == [1, 2, 3]
            v = agent.model.value(torch.as_tensor(final).view(2, 2, 4))[0, 1].item()
            cut = next(ep for ep in agent.batch[0] if len(ep[2]) == 3)
            np.testing.assert_allclose(cut[2], discounted_returns(np.full(3, 2.0), 0.5, v))
            np.testing.assert_array_equal(cut[0][:, 1], [1.0, 1.0, 1.0])  # env 1's obs
        results.append(agent.update(np.array([4, 4]) * (t + 1)))
        if t == 0:  # member 1 trained alone: member 0's weights and moments are as they were
            for x, x0 in zip(state(0), before, strict=True):
                torch.testing.assert_close(x, x0)
    assert results[1] is None
    trained = [~np.isnan(r["policy_loss"]) for r in (results[0], results[2])]
    assert [t.tolist() for t in trained] == [[False, True], [True, False]]
    assert agent.batch == [[], []] and agent.optimizer.steps.flatten().tolist() == [1, 1]


def test_episodes_longer_than_the_buffer_rows_are_kept_whole():
    """Env 1 runs a 150-step episode while env 0 ends one every step: the rows grow and drop."""
    agent = make_agent([{"batch_episodes": 1000}], gamma=1.0)
    done = np.array([True, False])
    for t in range(150):
        obs = np.array([[t, 0, 0, 0], [t, 1, 0, 0]], np.float32)
        agent.act(obs)
        agent.observe(obs, np.array([1.0, 1.0]), done | (t == 149), np.zeros(2, bool), None)
    long = agent.batch[0][-1]
    np.testing.assert_array_equal(long[0][:, 0], np.arange(150))
    np.testing.assert_allclose(long[2], np.arange(150, 0, -1))
    assert len(agent.batch[0]) == 151 and len(agent.steps.rewards) < 4 * 150


def test_a_non_finite_loss_fails_the_member_and_freezes_it():
    agent = make_agent([{"batch_episodes": 1}, {"batch_episodes": 1}])
    obs, done = np.zeros((4, 4), np.float32), np.ones(4, bool)
    agent.act(obs)
    agent.observe(obs, np.array([np.nan, 1.0, 1.0, 0.0]), done, ~done, None)
    before = agent.model.flat.clone()
    result = agent.update(np.array([2, 2]))
    assert np.isnan(result["failed"][0]) and result["failed"][1] == 0
    assert agent.active.tensor.tolist() == agent.active.host.tolist() == [False, True]
    torch.testing.assert_close(agent.model.flat[0], before[0])
    assert not torch.equal(agent.model.flat[1], before[1])


def test_an_idle_member_is_not_run_and_keeps_no_steps():
    agent = make_agent([{"batch_episodes": 1}, {"batch_episodes": 1}])
    agent.active[1] = False
    weights, generator = agent.model.flat[1].clone(), agent.model.generators[1].get_state()
    obs, no = np.ones((4, 4), np.float32), np.zeros(4, bool)
    done = np.array([True, True, False, False])  # member 1's episodes never end
    for frame in range(4, 4 * 100 + 1, 4):
        actions = agent.act(obs)
        agent.observe(obs, np.ones(4), done, no, None)
        result = agent.update(np.array([frame, frame]))
        assert (actions[2:] == 0).all() and agent.batch[1] == []
        assert not np.isnan(result["policy_loss"][0]) and np.isnan(result["policy_loss"][1])
    torch.testing.assert_close(agent.model.flat[1], weights)
    assert torch.equal(agent.model.generators[1].get_state(), generator)
    assert len(agent.steps.rewards) == 64  # the rows never grew for member 1's copies


def test_a_members_waiting_episodes_are_in_its_state():
    """A member resumed from member_state holds the ended episodes it had not trained on yet,
    and trains on them as it would have."""
    agent = make_agent([{"batch_episodes": 2}])
    obs, done, no = np.zeros((2, 4), np.float32), np.array([True, False]), np.zeros(2, bool)
    agent.act(obs)
    agent.observe(obs, np.array([1.0, 0.0]), done, no, None)
    resumed = make_agent([{"batch_episodes": 2}])
    resumed.load_member_state(0, agent.member_state(0))
    for a in (agent, resumed):
        a.act(obs)
        a.observe(obs, np.array([0.5, 0.0]), done, no, None)
    first, again = agent.update(np.array([4])), resumed.update(np.array([4]))
    assert first["policy_loss"][0] == again["policy_loss"][0]
    torch.testing.assert_close(agent.model.flat, resumed.model.flat)


@pytest.mark.parametrize("baseline", [True, False])
def test_learns_a_bandit(baseline):
    """One-step episodes, reward 1 for action 1 only: member 0's probability of it goes up;
    member 1 (lr 0) stays where it started."""
    agent = make_agent([{"lr": 1e-2}, {"lr": 0.0}], num_envs=16, batch_episodes=16,
                       baseline=baseline)  # fmt: skip
    obs, done = np.zeros((32, 4), np.float32), np.ones(32, bool)
    probs = lambda: agent.model.logits(torch.zeros(2, 1, 4)).softmax(-1)[:, 0, 1]  # noqa: E731
    start = probs()
    for frame in range(16, 16 * 60 + 1, 16):
        action = agent.act(obs)
        agent.observe(obs, (action == 1).astype(float), done, ~done, None)
        agent.update(np.array([frame, frame]))
    assert probs()[0].item() > 0.9
    assert probs()[1].item() == pytest.approx(start[1].item())


def test_continuous_actions():
    agent = make_agent([{"lr": 1e-2}], env="pendulum", num_envs=16, batch_episodes=16)
    obs, done = np.zeros((16, 3), np.float32), np.ones(16, bool)
    for frame in range(16, 16 * 200 + 1, 16):
        action = agent.act(obs)
        agent.observe(obs, -((action[:, 0] - 1.0) ** 2), done, ~done, None)
        agent.update(np.array([frame]))
    assert agent.model.logits(torch.zeros(1, 1, 3)).item() == pytest.approx(1.0, abs=0.3)
