"""Vector environments: gymnasium (classic control, Box2D, MuJoCo) and ALE, behind one small API.

`VecEnv` steps all copies at once with same-step autoreset, tracks raw episode returns, and
applies the training-time transforms (observation normalisation, reward scaling or clipping)
whose statistics are part of the checkpoint.
"""

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig

from rlhp.errors import ConfigError


class RunningMeanStd:
    """Running mean and variance (Chan et al. parallel algorithm), as in SB3's VecNormalize."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, x: np.ndarray) -> None:
        batch_mean, batch_var, n = x.mean(0), x.var(0), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]


def check_env_id(env_id: str) -> None:
    """Raise ConfigError naming the id if gymnasium (with ALE registered) does not know it."""
    import ale_py

    gym.register_envs(ale_py)
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        raise ConfigError(f"unknown env id {env_id!r}: {e}") from None


def make_vec(cfg: DictConfig, num_envs: int) -> gym.vector.VectorEnv:
    """The raw vector env of `num_envs` copies of `cfg.env` (same-step autoreset, raw rewards)."""
    check_env_id(cfg.env.id)
    same_step = gym.vector.AutoresetMode.SAME_STEP
    if cfg.env.type == "atari":
        from ale_py.vector_env import AtariVectorEnv

        game = gym.spec(cfg.env.id).kwargs["game"]
        return AtariVectorEnv(
            game,
            num_envs=num_envs,
            num_threads=cfg.env.num_threads,
            repeat_action_probability=cfg.env.sticky_action,
            reward_clipping=False,
            autoreset_mode=same_step,
        )
    if cfg.env.type != "gym":
        raise ConfigError(f"env.type must be gym or atari, got {cfg.env.type!r}")
    fns = [lambda: gym.make(cfg.env.id) for _ in range(num_envs)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=same_step)


class VecEnv:
    """A vector env with raw episode statistics and training-time transforms.

    `step` returns (obs, reward, terminated, truncated, final_obs): obs and final_obs are
    normalised when `obs_norm`, reward is scaled or clipped for training, and final_obs holds
    the last observation of each env whose episode just ended (for bootstrapping truncation).
    An evaluation env (`training=False`, `cfg.eval_episodes` copies) normalises observations
    with statistics it is given and does not update, and returns raw rewards.
    """

    def __init__(self, cfg: DictConfig, gamma: float, training: bool = True):
        self.training = training
        self.num_envs = cfg.env.num_envs if training else cfg.eval_episodes
        self.env = make_vec(cfg, self.num_envs)
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        self.obs_norm, self.reward_scale = cfg.env.obs_norm, cfg.env.reward_scale
        self.reward_clip, self.gamma = cfg.env.reward_clip, gamma
        self.obs_rms = RunningMeanStd(self.observation_space.shape)
        self.ret_rms = RunningMeanStd()
        self.discounted = np.zeros(self.num_envs)
        self.returns = np.zeros(self.num_envs)
        self.lengths = np.zeros(self.num_envs, np.int64)
        self.episodes: list[tuple[float, int]] = []

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        self.returns[:] = 0
        self.lengths[:] = 0
        self.discounted[:] = 0
        return self._obs(obs, update=True)

    def step(self, action: np.ndarray):
        if isinstance(self.action_space, gym.spaces.Box):
            action = np.clip(action, self.action_space.low, self.action_space.high)
        obs, reward, terminated, truncated, info = self.env.step(action)
        reward = np.asarray(reward, np.float64)
        done = terminated | truncated
        self.returns += reward
        self.lengths += 1
        for i in np.flatnonzero(done):
            self.episodes.append((float(self.returns[i]), int(self.lengths[i])))
        final_obs = None
        if done.any():
            final_obs = obs.copy()
            for i in np.flatnonzero(done):
                final_obs[i] = info["final_obs"][i]
            final_obs = self._obs(final_obs, update=False)
        obs = self._obs(obs, update=True)
        reward = self._reward(reward, done)
        self.returns[done] = 0
        self.lengths[done] = 0
        return obs, reward, terminated, truncated, final_obs

    def pop_episodes(self) -> list[tuple[float, int]]:
        """Completed episodes since the last call as (raw return, length)."""
        episodes, self.episodes = self.episodes, []
        return episodes

    def _obs(self, obs: np.ndarray, update: bool) -> np.ndarray:
        if not self.obs_norm:
            return obs
        if update and self.training:
            self.obs_rms.update(obs)
        obs = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)
        return np.clip(obs, -10, 10).astype(np.float32)

    def _reward(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        if not self.training:
            return reward
        if self.reward_clip:
            reward = np.sign(reward)
        if self.reward_scale:
            self.discounted = self.discounted * self.gamma + reward
            self.ret_rms.update(self.discounted)
            reward = np.clip(reward / np.sqrt(self.ret_rms.var + 1e-8), -10, 10)
            self.discounted[done] = 0
        return reward.astype(np.float32)

    def state_dict(self) -> dict:
        return {"obs_rms": self.obs_rms.state_dict(), "ret_rms": self.ret_rms.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.ret_rms.load_state_dict(state["ret_rms"])

    def close(self) -> None:
        self.env.close()
