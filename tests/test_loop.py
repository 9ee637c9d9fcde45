"""The loop's greedy evaluation: episodes against plain gymnasium, and what it reports to ASHA."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from rlhp.loop import EVAL_SEED, Session

CONF = Path(__file__).resolve().parents[1] / "conf"


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF)):
        return compose("config", overrides=list(overrides))


class LeanWithThePole:
    """A greedy policy with no parameters: push the cart the way the pole leans."""

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        return (obs[:, 2] > 0).astype(np.int64)


def test_evaluate_plays_one_greedy_episode_per_env_on_fresh_seeds(tmp_path):
    cfg = config("algo=reinforce", "env=cartpole", "eval_episodes=5", "seed=3")
    session = Session(cfg, tmp_path, 0, torch.device("cpu"))
    session.agent, session.frame = LeanWithThePole(), 4096
    expected = []
    for i in range(5):  # the vector env seeds copy i with seed + i
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=EVAL_SEED + 3 + 4096 + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(obs[2] > 0))
            total, done = total + reward, terminated or truncated
        expected.append(total)
    assert len(set(expected)) > 1  # the copies start from different states
    assert session.evaluate() == pytest.approx(np.mean(expected))
    assert session.eval_env.pop_episodes() == []  # evaluation episodes stay out of training stats
    assert not session.recent
    session.close()


def test_eval_epsilon_takes_random_actions_from_its_own_stream(tmp_path):
    cfg = config("algo=reinforce", "env=cartpole", "eval_episodes=4", "env.eval_epsilon=1.0")
    session = Session(cfg, tmp_path, 0, torch.device("cpu"))
    session.agent = LeanWithThePole()
    state = np.random.get_state()[1].copy()
    random_play = session.evaluate()
    assert session.evaluate() == random_play  # seeded by (seed, frame): repeatable
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # training RNG untouched
    session.agent.greedy = lambda obs: np.zeros(len(obs), np.int64)
    assert session.evaluate() == random_play  # every action random: the policy is not asked
    session.cfg.env.eval_epsilon = 0.0
    assert session.evaluate() != random_play
    session.close()


def test_evaluation_uses_but_never_updates_the_training_obs_statistics(tmp_path):
    cfg = config("algo=reinforce", "env=pendulum", "eval_episodes=2")
    session = Session(cfg, tmp_path, 0, torch.device("cpu"))
    assert cfg.env.obs_norm and session.eval_env.num_envs == 2
    session.env.reset(seed=0)
    before = {k: np.copy(v) for k, v in session.env.obs_rms.state_dict().items()}
    seen = []
    session.agent.greedy = lambda obs: seen.append(obs) or np.zeros((len(obs), 1), np.float32)
    session.evaluate()
    after = session.env.obs_rms.state_dict()
    for key, value in before.items():
        np.testing.assert_array_equal(value, after[key])
    raw = gym.make("Pendulum-v1").reset(seed=EVAL_SEED + cfg.seed)[0]
    mean, var = before["mean"][0], before["var"][0]  # one member
    np.testing.assert_allclose(seen[0][0], (raw - mean) / np.sqrt(var + 1e-8), rtol=1e-5)
    session.close()


def test_objective_eval_reports_eval_return_to_the_scheduler(tmp_path):
    cfg = config(
        "algo=reinforce",
        "env=cartpole",
        "env.max_frame=1024",
        "log_frequency=256",
        "eval_episodes=3",
        "objective=eval",
    )
    reports = []
    session = Session(cfg, tmp_path, 0, torch.device("cpu"))
    summary = session.run(lambda frame, value: reports.append((frame, value)) or True)
    df = pd.read_csv(tmp_path / "metrics.csv")
    assert reports == list(zip(df.frame, df.eval_return, strict=True))
    assert summary["eval"] == df.eval_return.iloc[-1]
    assert not df.eval_return.equals(df.total_reward_ma)
    # model_session0_best.pt is the policy of the best evaluation: replayed, it scores the same
    best = df.loc[df.eval_return.idxmax()]
    replay = Session(cfg, tmp_path / "replay", 0, torch.device("cpu"))
    replay.agent.load_state_dict(torch.load(tmp_path / "model_session0_best.pt"))
    replay.frame = int(best.frame)
    assert replay.evaluate() == pytest.approx(best.eval_return)
    replay.close()
