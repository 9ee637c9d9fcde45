"""Vector environments: gymnasium (classic control, Box2D, MuJoCo) and ALE, behind one small API.

`VecEnv` steps all copies at once with same-step autoreset, tracks raw episode returns, and
applies the training-time transforms (observation normalisation, reward scaling or clipping)
whose statistics are part of the checkpoint.
"""

import importlib

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig, OmegaConf

from rlhp.errors import ConfigError

# env families installed as extras (pip install 'rlhp[NAME]'): the module each needs
EXTRAS = {"atari": "ale_py", "mujoco": "mujoco", "box2d": "Box2D"}


class RunningMeanStd:
    """Running mean and variance (Chan et al. parallel algorithm), as in SB3's VecNormalize,
    one row per member: `update` takes [members, batch, *shape]."""

    def __init__(self, shape: tuple[int, ...] = (), members: int = 1):
        self.mean = np.zeros((members, *shape), np.float64)
        self.var = np.ones((members, *shape), np.float64)
        self.count = np.full((members,) + (1,) * len(shape), 1e-4)

    def update(self, x: np.ndarray, rows: slice | list[int] = slice(None)) -> None:
        """Fold in x [members, batch, *shape] (or the members `rows`)."""
        batch_mean, batch_var, n = x.mean(1), x.var(1), x.shape[1]
        mean, var, count = self.mean[rows], self.var[rows], self.count[rows]
        delta = batch_mean - mean
        total = count + n
        self.mean[rows] = mean + delta * n / total
        self.var[rows] = (var * count + batch_var * n + delta**2 * count * n / total) / total
        self.count[rows] = total

    def reset_member(self, k: int) -> None:
        self.mean[k], self.var[k], self.count[k] = 0.0, 1.0, 1e-4

    def member(self, k: int) -> "RunningMeanStd":
        """Member k's statistics as a one-member copy."""
        rms = RunningMeanStd()
        rows = slice(k, k + 1)
        rms.mean, rms.var, rms.count = self.mean[rows], self.var[rows], self.count[rows]
        return rms

    def state_dict(self, k: int | None = None) -> dict:
        rows = slice(None) if k is None else slice(k, k + 1)
        return {"mean": self.mean[rows].copy(), "var": self.var[rows].copy(),
                "count": self.count[rows].copy()}  # fmt: skip

    def load_state_dict(self, state: dict, k: int | None = None) -> None:
        rows = slice(None) if k is None else slice(k, k + 1)
        self.mean[rows], self.var[rows], self.count[rows] = (
            state["mean"],
            state["var"],
            state["count"],
        )


def extra(env_id: str, entry_point: object = "") -> str | None:
    """The extra (`pip install 'rlhp[NAME]'`) an env needs: atari for ALE ids, mujoco and box2d
    by gymnasium's entry point; None for classic control."""
    if env_id.startswith("ALE/"):
        return "atari"
    where = entry_point if isinstance(entry_point, str) else getattr(entry_point, "__module__", "")
    return next((name for name in ("mujoco", "box2d") if f"gymnasium.envs.{name}" in where), None)


def _require(name: str | None, env: str) -> None:
    """ConfigError in one line when the extra `name` is not installed."""
    if name is None:
        return
    try:
        importlib.import_module(EXTRAS[name])
    except ImportError:
        raise ConfigError(f"env={env} needs the {name} extra: pip install 'rlhp[{name}]'") from None


def check_env_id(env_id: str, name: str | None = None) -> None:
    """Raise ConfigError naming the env (`name`, else the id) if gymnasium (with ALE registered
    when installed) does not know it, or the extra its family needs is not installed."""
    env = name or env_id
    _require(extra(env_id), env)
    try:
        import ale_py

        gym.register_envs(ale_py)
    except ImportError:  # no atari extra: ALE ids stay unknown (and were refused above)
        pass
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as e:
        raise ConfigError(f"unknown env id {env_id!r}: {e}") from None
    _require(extra(env_id, spec.entry_point), env)


class CartPoleBatch(gym.vector.VectorEnv):
    """gymnasium's numpy-batched CartPoleVectorEnv with same-step autoreset (`final_obs` in the
    info) and one random stream per member: member k's copies draw their initial states from a
    generator seeded by member k's seed, never from a stream the other members share."""

    def __init__(self, members: int, num_envs: int):
        from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

        self.env = CartPoleVectorEnv(num_envs=members * num_envs)
        self.members, self.copies = members, num_envs
        self.num_envs = members * num_envs
        self.single_observation_space = self.env.single_observation_space
        self.single_action_space = self.env.single_action_space
        self.rngs = [np.random.default_rng(k) for k in range(members)]

    def _draw(self, idx: np.ndarray) -> None:
        """New initial states for the copies idx, member by member from its own stream."""
        for k in np.unique(idx // self.copies):
            mine = idx[idx // self.copies == k]
            self.env.state[:, mine] = self.rngs[k].uniform(-0.05, 0.05, (4, len(mine)))
        self.env.steps[idx] = 0

    def reset(self, *, seed: np.ndarray | None = None, options: dict | None = None):
        """`seed`: one per member (its copies' stream); `reset_mask` resets only some copies."""
        if self.env.state is None:
            self.env.reset(seed=0)
        mask = (options or {}).get("reset_mask", np.ones(self.num_envs, bool))
        idx = np.flatnonzero(mask)
        if seed is not None:
            for k, member_seed in zip(np.unique(idx // self.copies), seed, strict=True):
                self.rngs[k] = np.random.default_rng(int(member_seed))
        self._draw(idx)
        self.env.prev_done[:] = False
        return self.env.state.T.astype(np.float32), {}

    def step(self, action: np.ndarray, idle: np.ndarray | None = None):
        """One step of every copy; the copies `idle` (indices) stay as they were, no end."""
        if idle is not None:
            state, steps = self.env.state[:, idle], self.env.steps[idle]
        obs, reward, terminated, truncated, _ = self.env.step(action)
        if idle is not None:
            self.env.state[:, idle], self.env.steps[idle] = state, steps
            terminated[idle], truncated[idle] = False, False
        done = terminated | truncated
        info = {}
        if done.any():
            info["final_obs"] = obs.copy()
            self._draw(np.flatnonzero(done))
            self.env.prev_done[:] = False  # reset here, not on the next step
            obs = self.env.state.T.astype(np.float32)
        return obs, reward, terminated, truncated, info

    def close(self, **kwargs) -> None:
        self.env.close()


def make_vec(
    cfg: DictConfig, num_envs: int, members: int = 1, training: bool = True
) -> gym.vector.VectorEnv:
    """The raw vector env of `members * num_envs` copies of `cfg.env` (same-step autoreset, raw
    rewards); member k owns copies k * num_envs ... (k + 1) * num_envs - 1. The `training`
    copies take `env.kwargs` (gym.make's keyword arguments: reward weights, ...) and, for
    CartPole-v1 without kwargs, gymnasium's numpy-batched CartPole; the evaluation copies play
    the plain env with its defaults (its own reward). `cfg.env` is one that rlhp.config.check
    let through (env.type, a known id, kwargs the env takes)."""
    same_step = gym.vector.AutoresetMode.SAME_STEP
    if cfg.env.type == "atari":
        from ale_py.vector_env import AtariVectorEnv

        game = gym.spec(cfg.env.id).kwargs["game"]
        return AtariVectorEnv(
            game,
            num_envs=members * num_envs,
            num_threads=cfg.env.num_threads,
            repeat_action_probability=cfg.env.sticky_action,
            reward_clipping=False,
            autoreset_mode=same_step,
        )
    kwargs = OmegaConf.to_container(cfg.env.kwargs) if training and cfg.env.get("kwargs") else {}
    if training and not kwargs and cfg.env.id == "CartPole-v1":
        return CartPoleBatch(members, num_envs)
    fns = [lambda: gym.make(cfg.env.id, **kwargs) for _ in range(members * num_envs)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=same_step)


def step_copies(env: gym.vector.VectorEnv, action: np.ndarray, copies: np.ndarray):
    """Step the copies `copies` (indices) of a same-step-autoreset vector env: their obs,
    reward, terminated, truncated, and final obs (the last obs of an episode that ended, else
    the obs). A SyncVectorEnv steps those copies only and CartPoleBatch keeps the others as
    they were; AtariVectorEnv takes a full batch: every copy steps, the others' outcomes are
    dropped."""
    if isinstance(env, gym.vector.SyncVectorEnv) and len(copies) < env.num_envs:
        steps = [env.envs[i].step(action[i])[:4] for i in copies]
        obs, reward, terminated, truncated = (np.array(x) for x in zip(*steps, strict=True))
        final = obs.copy()
        for j in np.flatnonzero(terminated | truncated):
            obs[j] = env.envs[copies[j]].reset()[0]
        return obs, reward, terminated, truncated, final
    if isinstance(env, CartPoleBatch) and len(copies) < env.num_envs:
        out = env.step(action, np.setdiff1d(np.arange(env.num_envs), copies))
    else:
        out = env.step(action)
    obs, reward, terminated, truncated, info = out
    final = obs.copy()
    for i in np.flatnonzero(terminated | truncated):
        final[i] = info["final_obs"][i]
    return obs[copies], reward[copies], terminated[copies], truncated[copies], final[copies]


def spread(x: np.ndarray, copies: np.ndarray, size: int) -> np.ndarray:
    """[len(copies), ...] rows -> [size, ...], zeros in the other rows."""
    out = np.zeros((size,) + x.shape[1:], x.dtype)
    out[copies] = x
    return out


class VecEnv:
    """The vector env of a population's members, with raw episode statistics and training-time
    transforms, each member's own.

    `members` x `num_envs` copies step at once; arrays are [members * num_envs, ...], member k
    owning rows k * num_envs ... `step` returns (obs, reward, terminated, truncated, final_obs):
    obs and final_obs are normalised when `obs_norm` (with the member's statistics), reward is
    scaled (with the member's gamma) or clipped for training, and final_obs holds the last
    observation of each copy whose episode just ended (for bootstrapping truncation).
    An evaluation env (`training=False`, `cfg.eval_episodes` copies, one member) normalises
    observations with statistics it is given and does not update, and returns raw rewards.
    """

    def __init__(self, cfg: DictConfig, gamma, training: bool = True, members: int = 1):
        self.training, self.members = training, members
        self.num_envs = cfg.env.num_envs if training else cfg.eval_episodes
        # evaluation plays the plain gymnasium env's own episodes, seed for seed
        self.env = make_vec(cfg, self.num_envs, members, training)
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        self.obs_norm, self.reward_scale = cfg.env.obs_norm, cfg.env.reward_scale
        self.reward_clip = cfg.env.reward_clip
        self.gamma = np.broadcast_to(np.asarray(gamma, np.float64), (members,)).copy()
        self.obs_rms = RunningMeanStd(self.observation_space.shape, members)
        self.ret_rms = RunningMeanStd((), members)
        copies = members * self.num_envs
        self.discounted = np.zeros(copies)
        self.returns = np.zeros(copies)
        self.lengths = np.zeros(copies, np.int64)
        self.episodes: list[tuple[int, float, int]] = []  # (member, raw return, length)

    def _rows(self, k: int) -> slice:
        return slice(k * self.num_envs, (k + 1) * self.num_envs)

    def reset(self, seed: int | list[int]) -> np.ndarray:
        """All copies; member k's copies get seeds seed[k], seed[k] + 1, ..."""
        seeds = [seed] if isinstance(seed, int) else list(seed)
        if isinstance(self.env, CartPoleBatch):
            obs, _ = self.env.reset(seed=np.array(seeds))
        else:
            copies = [s + j for s in seeds for j in range(self.num_envs)]
            sync = isinstance(self.env, gym.vector.SyncVectorEnv)
            obs, _ = self.env.reset(seed=copies if sync else np.array(copies))
        self.returns[:] = 0
        self.lengths[:] = 0
        self.discounted[:] = 0
        return self._obs(obs, update=True)

    def reset_member(self, k: int, seed: int, gamma: float) -> np.ndarray:
        """Fresh copies and statistics for a new member at index k; returns its observations."""
        rows = self._rows(k)
        idx = np.arange(rows.start, rows.stop)
        if isinstance(self.env, gym.vector.SyncVectorEnv):
            obs = np.stack([self.env.envs[i].reset(seed=seed + j)[0] for j, i in enumerate(idx)])
        else:
            mask = np.zeros(self.env.num_envs, bool)
            mask[idx] = True
            seeds = np.array([seed]) if isinstance(self.env, CartPoleBatch) else idx - idx[0] + seed
            obs = self.env.reset(seed=seeds, options={"reset_mask": mask})[0][idx]
        self.obs_rms.reset_member(k)
        self.ret_rms.reset_member(k)
        self.gamma[k] = gamma
        self.returns[rows], self.lengths[rows], self.discounted[rows] = 0, 0, 0
        self.episodes = [e for e in self.episodes if e[0] != k]
        return self._obs(obs[None], update=True, rows=[k])[0]

    def step(self, action: np.ndarray, active: np.ndarray | None = None):
        """One step of every copy, or (`active`: [members] bool) of the active members' copies
        only: an idle member's copies, returns and statistics stay as they are and its rows
        come back zero (obs, reward) and False (ends)."""
        members = np.arange(self.members) if active is None else np.flatnonzero(active)
        copies = (members[:, None] * self.num_envs + np.arange(self.num_envs)).ravel()
        if isinstance(self.action_space, gym.spaces.Box):
            action = np.clip(action, self.action_space.low, self.action_space.high)
        obs, reward, terminated, truncated, final = step_copies(self.env, action, copies)
        reward = np.asarray(reward, np.float64)
        done = terminated | truncated
        self.returns[copies] += reward
        self.lengths[copies] += 1
        for i in copies[done]:
            member = i // self.num_envs
            self.episodes.append((int(member), float(self.returns[i]), int(self.lengths[i])))
        final_obs = self._obs(final, update=False, rows=members) if done.any() else None
        obs = self._obs(obs, update=True, rows=members)
        reward = self._reward(reward, done, members)
        self.returns[copies[done]] = 0
        self.lengths[copies[done]] = 0
        out = obs, reward, terminated, truncated, final_obs
        if len(copies) == len(self.returns):
            return out
        return tuple(None if x is None else spread(x, copies, len(self.returns)) for x in out)

    def pop_episodes(self) -> list[tuple[float, int]]:
        """Completed episodes (of a one-member env) since the last call as (raw return, length)."""
        episodes, self.episodes = self.episodes, []
        return [(ret, length) for _, ret, length in episodes]

    def pop_member_episodes(self) -> list[list[float]]:
        """The raw returns of episodes completed since the last call, per member."""
        returns: list[list[float]] = [[] for _ in range(self.members)]
        for member, ret, _ in self.episodes:
            returns[member].append(ret)
        self.episodes = []
        return returns

    def _obs(self, obs: np.ndarray, update: bool, rows: list[int] | None = None) -> np.ndarray:
        """Normalised observations [members * num_envs, ...], or [len(rows), num_envs, ...] of
        the members `rows`."""
        if not self.obs_norm:
            return obs
        rows = list(range(self.members)) if rows is None else rows
        x = obs.reshape((len(rows), self.num_envs) + self.observation_space.shape)
        if update and self.training:
            self.obs_rms.update(x, rows)
        mean, var = self.obs_rms.mean[rows][:, None], self.obs_rms.var[rows][:, None]
        out = np.clip((x - mean) / np.sqrt(var + 1e-8), -10, 10).astype(np.float32)
        return out.reshape(obs.shape)

    def _reward(self, reward: np.ndarray, done: np.ndarray, members: np.ndarray) -> np.ndarray:
        """The training reward of the copies of `members` (indices)."""
        if not self.training:
            return reward
        if self.reward_clip:
            reward = np.sign(reward)
        if self.reward_scale:
            copies = (members[:, None] * self.num_envs + np.arange(self.num_envs)).ravel()
            gamma = np.repeat(self.gamma[members], self.num_envs)
            discounted = self.discounted[copies] * gamma + reward
            self.ret_rms.update(discounted.reshape(len(members), self.num_envs), members)
            std = np.repeat(np.sqrt(self.ret_rms.var[members] + 1e-8), self.num_envs)
            reward = np.clip(reward / std, -10, 10)
            discounted[done] = 0
            self.discounted[copies] = discounted
        return reward.astype(np.float32)

    def state_dict(self, k: int | None = None) -> dict:
        """The statistics of every member, or of member k."""
        return {"obs_rms": self.obs_rms.state_dict(k), "ret_rms": self.ret_rms.state_dict(k)}

    def load_state_dict(self, state: dict, k: int | None = None) -> None:
        self.obs_rms.load_state_dict(state["obs_rms"], k)
        self.ret_rms.load_state_dict(state["ret_rms"], k)

    def close(self) -> None:
        self.env.close()
