"""The train loop of one session of one algorithm in one vector env (DQN, SAC, REINFORCE; PPO
and A2C train as populations, rlhp.population, which shares `evaluate`, `summarize` and
`save_checkpoint` from here).

It counts frames (env steps summed over the vector envs), tracks episode returns and
`total_reward_ma` (the mean return of the last 100 episodes), and at every log point evaluates
the greedy policy (`eval_return`, when `eval_episodes` > 0), writes metrics (rlhp.log), asks
the reporter whether to go on (a trial's first session reports to ASHA: rlhp.asha.reporter) and
checkpoints the whole training state. A session whose run directory holds a checkpoint resumes
from it; the checkpoint of a stopped session ends it at once.
"""

import random
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig

from rlhp import algo as algos
from rlhp.env import VecEnv
from rlhp.log import Logger
from rlhp.record import replacing

Reporter = Callable[[int, float], bool]  # (frame, total_reward_ma or eval_return) -> continue?
EVAL_SEED = 1_000_003  # evaluation episodes start from seeds the training envs never use


class Preempted(Exception):
    """Raised after a checkpoint when the job was asked to stop (SLURM preemption, time limit)."""


def evaluate(env: VecEnv, greedy: Callable[[np.ndarray], np.ndarray], seed: int, epsilon: float):
    """Mean raw return of one greedy episode in each copy of the evaluation env `env`, which
    normalises observations with the training env's statistics and leaves them as they are.
    With `epsilon` (env.eval_epsilon), that share of actions is uniformly random (from its own
    RNG: evaluation leaves training's random streams alone)."""
    rng, space = np.random.default_rng(seed), env.action_space
    obs = env.reset(seed=seed)
    returns, ended = np.zeros(env.num_envs), np.zeros(env.num_envs, bool)
    while not ended.all():
        action = greedy(obs)
        explore = rng.uniform(size=env.num_envs) < epsilon
        if explore.any():
            action[explore] = (
                rng.integers(space.n, size=explore.sum())
                if isinstance(space, gym.spaces.Discrete)
                else rng.uniform(space.low, space.high, (explore.sum(),) + space.shape)
            )
        obs, reward, terminated, truncated, _ = env.step(action)
        returns += np.where(ended, 0.0, reward)
        ended |= terminated | truncated
    env.pop_episodes()
    return float(returns.mean())


def save_checkpoint(state: dict, path: Path) -> None:
    """torch.save, atomically (rlhp.record.replacing): a reader sees the old or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        torch.save(state, tmp)


def summarize(history: list[dict], frame: int, wall: float, stopped_at: int | None) -> dict:
    """A session's figures from its log rows: final, auc and max total_reward_ma, the last and
    best eval_return."""
    ma = np.array([row["total_reward_ma"] for row in history], dtype=float)
    finite = ma[np.isfinite(ma)]
    evals = [row["eval_return"] for row in history if "eval_return" in row]
    return {
        "final": float(ma[-1]) if len(ma) else float("nan"),
        "eval": evals[-1] if evals else float("nan"),
        "eval_best": max(evals, default=float("nan")),
        "auc": float(finite.mean()) if len(finite) else float("nan"),
        "max": float(finite.max()) if len(finite) else float("nan"),
        "frame": frame,
        "wall_s": wall,
        "stopped_at": stopped_at,
    }


class Session:
    """Trains `cfg.algo` on `cfg.env` for `cfg.env.max_frame` frames with seed
    cfg.seed + session, in `run_dir`."""

    def __init__(self, cfg: DictConfig, run_dir: Path, session: int, device: torch.device):
        self.cfg, self.run_dir, self.session = cfg, run_dir, session
        self.seed = cfg.seed + session
        self.ckpt_path = run_dir / "checkpoints" / f"session{session}.pt"
        self.stop_requested = False  # set from a signal handler: checkpoint and raise Preempted
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        self.env = VecEnv(cfg, cfg.algo.gamma)
        self.eval_env = VecEnv(cfg, cfg.algo.gamma, training=False) if cfg.eval_episodes else None
        self.agent = algos.make(cfg, self.env, device)
        self.frame, self.wall = 0, 0.0
        self.history: list[dict] = []
        self.recent = deque(maxlen=100)  # returns of the last 100 episodes
        self.episodes: list[float] = []  # returns since the last log point
        self.stopped_at: int | None = None

    @property
    def total_reward_ma(self) -> float:
        return float(np.mean(self.recent)) if self.recent else float("nan")

    @property
    def eval_return(self) -> float:
        """The last evaluation's mean return (NaN before the first or without evaluation)."""
        return self.history[-1].get("eval_return", float("nan")) if self.history else float("nan")

    def evaluate(self) -> float:
        """The greedy policy's mean raw return (see `evaluate`), with the training statistics."""
        self.eval_env.obs_rms = self.env.obs_rms
        seed = EVAL_SEED + self.seed + self.frame
        return evaluate(self.eval_env, self.agent.greedy, seed, self.cfg.env.eval_epsilon)

    def run(self, reporter: Reporter | None = None) -> dict:
        """Train to max_frame (or until the reporter says stop); returns the session summary."""
        resumed = self.ckpt_path.exists()
        if resumed:
            self._load()
            if self.stopped_at is not None:
                self.close()
                return self.summary()
        purge = self.frame + 1 if resumed else None
        self.logger = Logger(self.run_dir, self.session, purge_step=purge)
        try:
            self._train(reporter)
        finally:
            self.logger.close()
            self.close()
        self._save_model()
        return self.summary()

    def _train(self, reporter: Reporter | None) -> None:
        """Step, observe and update until max_frame, with a log point every log_frequency
        frames (at a boundary of the agent); Preempted after a checkpoint when asked to stop."""
        cfg, num_envs = self.cfg, self.env.num_envs
        obs = self.env.reset(seed=self.seed + self.frame)
        max_frame = cfg.env.max_frame  # read once: each DictConfig lookup costs ~10 µs
        self.next_log = (self.frame // cfg.log_frequency + 1) * cfg.log_frequency
        self.started = time.perf_counter() - self.wall
        self.last_time, self.last_frame = time.perf_counter(), self.frame
        losses: dict[str, float] = {}
        while self.frame < max_frame or not self.agent.at_boundary:
            action = self.agent.act(obs)
            obs, reward, terminated, truncated, final_obs = self.env.step(action)
            self.frame += num_envs
            self.agent.observe(obs, reward, terminated, truncated, final_obs)
            losses = self.agent.update(self.frame) or losses
            for ret, _ in self.env.pop_episodes():
                self.recent.append(ret)
                self.episodes.append(ret)
            if not self.agent.at_boundary:
                continue
            if self.frame >= self.next_log or self.frame >= max_frame:
                self._log_point(losses, reporter)
                if self.stopped_at is not None:
                    return
            if self.stop_requested:
                self.wall = time.perf_counter() - self.started
                self._save()
                raise Preempted(f"session {self.session} checkpointed at frame {self.frame}")

    def _log_point(self, losses: dict[str, float], reporter: Reporter | None) -> None:
        """A log row (and evaluation, the best model so far), the reporter's decision, then a
        checkpoint."""
        fps = (self.frame - self.last_frame) / (time.perf_counter() - self.last_time)
        row = {
            "frame": self.frame,
            "total_reward_ma": self.total_reward_ma,
            "episode_return": float(np.mean(self.episodes)) if self.episodes else np.nan,
            "fps": fps,  # training only: evaluation time is left out
        }
        if self.eval_env is not None:
            row["eval_return"] = self.evaluate()
            best = self.summary()["eval_best"]
            if np.isnan(best) or row["eval_return"] > best:
                self._save_model("_best")  # the best greedy policy so far
        self.last_time = time.perf_counter()
        self.wall = self.last_time - self.started
        self.history.append(row | {"wall_s": self.wall, **losses})
        self.logger.log(self.history)
        self.episodes, self.last_frame = [], self.frame
        self.next_log = (self.frame // self.cfg.log_frequency + 1) * self.cfg.log_frequency
        score = self.eval_return if self.cfg.objective == "eval" else self.total_reward_ma
        if reporter is not None and not reporter(self.frame, score):
            self.stopped_at = self.frame
        self._save()

    def close(self) -> None:
        self.env.close()
        if self.eval_env is not None:
            self.eval_env.close()

    def summary(self) -> dict:
        return summarize(self.history, self.frame, self.wall, self.stopped_at)

    def _save_model(self, suffix: str = "") -> None:
        """The agent's nets and optimiser state, without the replay memory."""
        model = {k: v for k, v in self.agent.state_dict().items() if k != "memory"}
        torch.save(model, self.run_dir / f"model_session{self.session}{suffix}.pt")

    def _save(self) -> None:
        state = {
            "frame": self.frame,
            "wall": self.wall,
            "history": self.history,
            "recent": list(self.recent),
            "stopped_at": self.stopped_at,
            "agent": self.agent.state_dict(),
            "env": self.env.state_dict(),
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }
        save_checkpoint(state, self.ckpt_path)

    def _load(self) -> None:
        state = torch.load(self.ckpt_path, weights_only=False)
        self.frame, self.wall, self.history = state["frame"], state["wall"], state["history"]
        self.recent.extend(state["recent"])
        self.stopped_at = state["stopped_at"]
        self.agent.load_state_dict(state["agent"])
        self.env.load_state_dict(state["env"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
