"""VecEnv: raw episode returns, training-time reward clipping/scaling, obs normalisation, final_obs.

A scripted gymnasium env with known rewards and observations goes through the real
SyncVectorEnv path, so every expected number below is computed here from the script.
"""

import io
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from rlhp.env import VecEnv

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
SCRIPT_ID = "RlhpTest/Scripted-v0"
REWARDS = [2.5, -7.0, 0.0, 3.0]


class ScriptedEnv(gym.Env):
    """Episodes of REWARDS scaled by `scale`, cut to `length` steps; obs = [t, 10 * scale + t^2].

    With vector seeds s, s + 1, ...: an even seed gives scale 1 and length 4, an odd seed
    scale 2 and length 3 (kept over autoresets, which pass no seed).
    """

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.scale, self.length, self.t = 1.0, 4, 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t, 10 * self.scale + self.t**2], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.scale, self.length = (1.0, 4) if seed % 2 == 0 else (2.0, 3)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = REWARDS[self.t] * self.scale
        self.t += 1
        return self._obs(), reward, self.t == self.length, False, {}


if SCRIPT_ID not in gym.registry:
    gym.register(SCRIPT_ID, entry_point=ScriptedEnv)


def make_cfg(env: dict):
    base = {
        "name": "scripted",
        "id": SCRIPT_ID,
        "type": "gym",
        "num_envs": 2,
        "net": "mlp",
        "obs_norm": False,
        "reward_scale": False,
        "reward_clip": False,
    }
    return OmegaConf.create({"env": {**base, **env}})


def raw_script(num_steps: int):
    """Per step: raw rewards (2,), dones (2,), next obs (2, 2) after same-step autoreset."""
    scales, lengths = np.array([1.0, 2.0]), np.array([4, 3])
    t = np.zeros(2, int)
    for _ in range(num_steps):
        reward = np.array([REWARDS[t[i]] * scales[i] for i in range(2)])
        t += 1
        done = t == lengths
        t[done] = 0
        obs = np.stack([[t[i], 10 * scales[i] + t[i] ** 2] for i in range(2)])
        yield reward, done, obs


def run(venv: VecEnv, num_steps: int):
    actions = np.zeros(venv.num_envs, np.int64)
    return [venv.step(actions) for _ in range(num_steps)]


def test_reward_clip_trains_on_signs_and_tracks_raw_returns():
    venv = VecEnv(make_cfg({"reward_clip": True}), gamma=0.99)
    venv.reset(seed=0)
    steps = run(venv, 8)
    for (_, reward, *_), (raw, _, _) in zip(steps, raw_script(8), strict=True):
        assert reward.dtype == np.float32
        np.testing.assert_array_equal(reward, np.sign(raw))
    # env 1 ends at steps 3 and 6 (5 - 14 + 0), env 0 at steps 4 and 8 (2.5 - 7 + 0 + 3)
    assert venv.pop_episodes() == [(-9.0, 3), (-1.5, 4), (-9.0, 3), (-1.5, 4)]
    assert venv.pop_episodes() == []
    venv.close()


def test_reward_scale_divides_by_std_of_discounted_return():
    gamma = 0.9
    venv = VecEnv(make_cfg({"reward_scale": True}), gamma=gamma)
    venv.reset(seed=0)
    steps = run(venv, 8)
    discounted, seen = np.zeros(2), []
    for (_, reward, *_), (raw, done, _) in zip(steps, raw_script(8), strict=True):
        discounted = gamma * discounted + raw
        seen.extend(discounted)
        expected = np.clip(raw / np.sqrt(np.var(seen)), -10, 10)
        np.testing.assert_allclose(reward, expected, rtol=1e-3)
        discounted[done] = 0
    # the episode statistics stay raw
    assert [ret for ret, _ in venv.pop_episodes()] == [-9.0, -1.5, -9.0, -1.5]
    venv.close()


def test_evaluation_env_returns_raw_rewards_and_keeps_its_statistics():
    cfg = make_cfg({"reward_clip": True, "reward_scale": True, "obs_norm": True})
    cfg.eval_episodes = 2
    venv = VecEnv(cfg, gamma=0.99, training=False)
    assert venv.num_envs == 2
    venv.reset(seed=0)
    steps = run(venv, 8)
    for (_, reward, *_), (raw, _, _) in zip(steps, raw_script(8), strict=True):
        np.testing.assert_array_equal(reward, raw)
    assert venv.obs_rms.count == 1e-4  # never updated
    np.testing.assert_array_equal(steps[-1][0], np.clip(list(raw_script(8))[-1][2], -10, 10))
    venv.close()


def test_obs_normalisation_and_state_dict_round_trip():
    cfg = make_cfg({"obs_norm": True})
    venv = VecEnv(cfg, gamma=0.99)
    first = venv.reset(seed=0)
    steps = run(venv, 7)
    seen = [np.array([[0.0, 10.0], [0.0, 20.0]])]  # the reset observations
    for _, _, obs in raw_script(7):
        seen.append(obs)
    seen = np.concatenate(seen)
    mean, std = seen.mean(0), seen.std(0)
    np.testing.assert_allclose(steps[-1][0], (seen[-2:] - mean) / std, rtol=1e-3, atol=1e-4)
    assert steps[-1][0].dtype == np.float32
    assert not np.allclose(first, steps[-1][0])

    # the statistics survive a checkpoint (torch.save / torch.load) into a fresh VecEnv
    buf = io.BytesIO()
    torch.save(venv.state_dict(), buf)
    buf.seek(0)
    restored = VecEnv(cfg, gamma=0.99)
    restored.load_state_dict(torch.load(buf, weights_only=False))
    fresh = VecEnv(cfg, gamma=0.99)
    a, b, c = (env.reset(seed=0) for env in (venv, restored, fresh))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)  # without the statistics the obs come out differently
    for x, y in zip(run(venv, 5), run(restored, 5), strict=True):
        np.testing.assert_array_equal(x[0], y[0])
    # stepping the restored env leaves the original's statistics alone
    state = venv.state_dict()["obs_rms"]
    run(restored, 3)
    np.testing.assert_array_equal(venv.state_dict()["obs_rms"]["mean"], state["mean"])
    for env in (venv, restored, fresh):
        env.close()


def test_final_obs_is_the_terminal_observation_on_cartpole():
    cfg = make_cfg({"id": "CartPole-v1"})
    venv = VecEnv(cfg, gamma=0.99)
    obs = venv.reset(seed=0)
    actions = np.zeros(2, np.int64)  # always push left: every episode ends within 100 steps
    for _ in range(100):
        obs, reward, terminated, truncated, final_obs = venv.step(actions)
        done = terminated | truncated
        if done.any():
            break
    else:
        pytest.fail("no CartPole episode ended")
    for i in np.flatnonzero(done):
        assert terminated[i]
        x, theta = final_obs[i][0], final_obs[i][2]
        assert abs(x) > 2.4 or abs(theta) > 12 * 2 * np.pi / 360  # CartPole's failure bounds
        assert (np.abs(obs[i]) <= 0.05).all()  # obs is already the next episode's reset obs
        assert not np.allclose(final_obs[i], obs[i])
    [(ret, length)] = venv.pop_episodes()[:1]
    assert ret == length  # +1 per step, unscaled
    venv.close()


def test_atari_trains_on_clipped_rewards_and_reports_raw_score():
    # Space Invaders scores 5 to 30 points an alien, so raw and clipped returns differ at once
    atari = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "env" / "breakout.yaml"))
    assert atari["reward_clip"]
    cfg = OmegaConf.create(
        {"env": {**atari, "id": "ALE/SpaceInvaders-v5", "num_envs": 1, "num_threads": 1}}
    )
    venv = VecEnv(cfg, gamma=0.99)
    obs = venv.reset(seed=0)
    assert obs.shape == (1, 4, 84, 84) and obs.dtype == np.uint8
    rng = np.random.default_rng(0)
    clipped = 0.0
    for _ in range(5000):
        _, reward, terminated, truncated, _ = venv.step(rng.integers(venv.action_space.n, size=1))
        assert set(np.unique(reward)) <= {-1.0, 0.0, 1.0}
        clipped += float(reward.sum())
        if (terminated | truncated).any():
            break
    else:
        pytest.fail("no Space Invaders episode ended")
    [(ret, _)] = venv.pop_episodes()
    assert clipped > 0
    assert ret >= 5 * clipped  # the episode return is the raw game score
    venv.close()
