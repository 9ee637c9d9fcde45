"""A member's greedy evaluation: episodes against plain gymnasium, and what it reports to ASHA."""

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from _members import config

from rlhp.env import VecEnv
from rlhp.member import EVAL_SEED, Member, evaluate
from rlhp.population import Population


class LeanWithThePole:
    """A greedy policy with no parameters: push the cart the way the pole leans."""

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        return (obs[:, 2] > 0).astype(np.int64)


def eval_env(cfg) -> VecEnv:
    return VecEnv(cfg, cfg.algo.gamma, training=False)


def test_evaluate_plays_one_greedy_episode_per_env_on_fresh_seeds():
    cfg = config("env=cartpole", "eval_episodes=5")
    env, seed = eval_env(cfg), EVAL_SEED + 3 + 4096
    expected = []
    for i in range(5):  # the vector env seeds copy i with seed + i
        plain = gym.make("CartPole-v1")
        obs, _ = plain.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = plain.step(int(obs[2] > 0))
            total, done = total + reward, terminated or truncated
        expected.append(total)
    assert len(set(expected)) > 1  # the copies start from different states
    assert evaluate(env, LeanWithThePole().greedy, seed, 0.0) == pytest.approx(np.mean(expected))
    assert env.pop_episodes() == []  # evaluation episodes stay out of training stats
    env.close()


def test_eval_epsilon_takes_random_actions_from_its_own_stream():
    cfg = config("env=cartpole", "eval_episodes=4")
    env, greedy = eval_env(cfg), LeanWithThePole().greedy
    state = np.random.get_state()[1].copy()
    random_play = evaluate(env, greedy, 7, 1.0)
    assert evaluate(env, greedy, 7, 1.0) == random_play  # seeded: repeatable
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # training RNG untouched
    pushes_left = lambda obs: np.zeros(len(obs), np.int64)  # noqa: E731
    assert evaluate(env, pushes_left, 7, 1.0) == random_play  # every action random
    assert evaluate(env, greedy, 7, 0.0) != random_play
    env.close()


def test_evaluation_uses_but_never_updates_the_training_obs_statistics():
    cfg = config("algo=a2c", "env=pendulum", "eval_episodes=2")
    train_env, env = VecEnv(cfg, cfg.algo.gamma), eval_env(cfg)
    assert cfg.env.obs_norm and env.num_envs == 2
    train_env.reset(seed=0)
    before = {k: np.copy(v) for k, v in train_env.obs_rms.state_dict().items()}
    env.obs_rms = train_env.obs_rms.member(0)
    seen = []
    evaluate(env, lambda obs: seen.append(obs) or np.zeros((len(obs), 1), np.float32), 5, 0.0)
    after = train_env.obs_rms.state_dict()
    for key, value in before.items():
        np.testing.assert_array_equal(value, after[key])
    raw = gym.make("Pendulum-v1").reset(seed=5)[0]
    mean, var = before["mean"][0], before["var"][0]  # one member
    np.testing.assert_allclose(seen[0][0], (raw - mean) / np.sqrt(var + 1e-8), rtol=1e-5)
    env.close()
    train_env.close()


def test_objective_eval_reports_eval_return_to_the_scheduler(tmp_path):
    cfg = config(
        "env=cartpole",
        "env.max_frame=2048",
        "log_frequency=512",
        "eval_episodes=3",
        "objective=eval",
    )
    reports = []
    member = Member(
        cfg, tmp_path, reporter=lambda frame, value: reports.append((frame, value)) or True
    )
    Population([member], torch.device("cpu")).run()
    df = pd.read_csv(tmp_path / "metrics.csv")
    assert reports == list(zip(df.frame, df.eval_return, strict=True))
    assert member.summary()["eval"] == df.eval_return.iloc[-1]
    assert not df.eval_return.equals(df.total_reward_ma)
    # model_session0_best.pt is the policy of the best evaluation: replayed, it scores the same
    best = df.loc[df.eval_return.idxmax()]
    replay = Population([Member(cfg, tmp_path / "replay")], torch.device("cpu"))
    replay.agent.load_member_state(0, torch.load(tmp_path / "model_session0_best.pt"))
    greedy = lambda obs: replay.agent.greedy(obs, 0)  # noqa: E731
    seed = EVAL_SEED + cfg.seed + int(best.frame)
    assert evaluate(eval_env(cfg), greedy, seed, 0.0) == pytest.approx(best.eval_return)
    replay.close()
