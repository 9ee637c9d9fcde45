"""What each member of a population keeps, written once for every algorithm: a member is one
session of one trial (its config, run directory and session number, seed = seed + session).

Its bookkeeping: frames, episode returns and `total_reward_ma` (the mean return of its last 100
episodes), a log row at every log point (metrics.csv and TensorBoard through rlhp.log), the
greedy evaluation (`eval_return`, when `eval_episodes` > 0) and the best model by it, the
checkpoint of its whole training state, its summary, and the reporter that asks ASHA whether it
goes on. The sessions of one trial report in `Lockstep`: ASHA ranks the mean over their seeds.
"""

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig

from rlhp.env import VecEnv
from rlhp.log import Logger
from rlhp.record import replacing

Reporter = Callable[[int, float], bool]  # (frame, total_reward_ma or eval_return) -> continue?
EVAL_SEED = 1_000_003  # evaluation episodes start from seeds the training envs never use


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


class Lockstep:
    """The sessions of one trial as members of a population: at each log point the trial
    reports the mean over its sessions once (ASHA ranks on N seeds), and a trial that is
    stopped (or whose session fails) stops all its sessions at the same frame."""

    def __init__(self, report: Reporter, sessions: int):
        self.report, self.sessions = report, sessions
        self.values: dict[int, list[float]] = {}
        self.stopped_at: int | None = None

    def reporter(self) -> Reporter:
        """A session's reporter: the last session to report at a frame makes the decision."""

        def report(frame: int, value: float) -> bool:
            values = self.values.setdefault(frame, [])
            values.append(value)
            if len(values) == self.sessions:
                del self.values[frame]
                finite = [v for v in values if np.isfinite(v)]
                mean = float(np.mean(finite)) if finite else float("nan")
                if self.stopped_at is None and not self.report(frame, mean):
                    self.stopped_at = frame
            return self.stopped_at is None

        return report


@dataclass
class Member:
    """One session of one trial, and its bookkeeping."""

    cfg: DictConfig
    run_dir: Path
    session: int = 0
    reporter: Reporter | None = None
    frame: int = 0
    wall: float = 0.0
    history: list[dict] = field(default_factory=list)
    recent: deque = field(default_factory=lambda: deque(maxlen=100))
    stopped_at: int | None = None
    error: str | None = None  # why it failed (non-finite loss)
    lockstep: Lockstep | None = None  # the trial's sessions, when they train together
    max_frame: int = field(init=False)  # cfg.env.max_frame, read at every step off-policy

    def __post_init__(self) -> None:
        self.max_frame = self.cfg.env.max_frame  # an OmegaConf lookup costs ~20 us

    @property
    def seed(self) -> int:
        return self.cfg.seed + self.session

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoints" / f"session{self.session}.pt"

    @property
    def done(self) -> bool:
        return self.error is not None or self.stopped_at is not None or self.frame >= self.max_frame

    @property
    def total_reward_ma(self) -> float:
        return float(np.mean(self.recent)) if self.recent else float("nan")

    def summary(self) -> dict:
        return summarize(self.history, self.frame, self.wall, self.stopped_at)

    def load(self) -> dict | None:
        """The checkpoint's training state (agent, env) after restoring the bookkeeping."""
        if not self.ckpt_path.exists():
            return None
        state = torch.load(self.ckpt_path, weights_only=False)
        self.frame, self.wall, self.history = state["frame"], state["wall"], state["history"]
        self.recent.extend(state["recent"])
        self.stopped_at = state["stopped_at"]
        return state

    def save(self, agent: dict, env: dict) -> None:
        """The member's checkpoint: bookkeeping, its slice of the agent (weights, optimiser,
        random streams, replay memory) and its env statistics: nothing global."""
        state = {"frame": self.frame, "wall": self.wall, "history": self.history}
        state |= {"recent": list(self.recent), "stopped_at": self.stopped_at}
        save_checkpoint(state | {"agent": agent, "env": env}, self.ckpt_path)

    def save_model(self, agent: dict, suffix: str = "") -> None:
        """Its nets and optimiser state (no replay memory): model_session<N><suffix>.pt."""
        model = {k: v for k, v in agent.items() if k != "memory"}
        torch.save(model, self.run_dir / f"model_session{self.session}{suffix}.pt")

    def report(self, score: float) -> None:
        """Its score at a log point to its reporter: stopped here when ASHA says so."""
        if self.reporter is not None and not self.reporter(self.frame, score):
            self.stopped_at = self.frame

    def follow(self) -> None:
        """Once every session of its trial reported: stopped when its trial was."""
        if self.lockstep is not None and self.lockstep.stopped_at is not None:
            self.stopped_at = self.stopped_at or self.frame

    def failed(self) -> None:
        """A failed session ends its trial: its other sessions stop too."""
        if self.lockstep is not None:
            self.lockstep.stopped_at = self.frame


class Training:
    """A member in training: its logger, evaluation env and what it saw since its last log
    point. `log_point` writes the row and returns the score its reporter judges."""

    def __init__(self, member: Member, resumed: bool):
        self.member, cfg = member, member.cfg
        purge = member.frame + 1 if resumed else None
        self.logger = Logger(member.run_dir, member.session, purge_step=purge)
        self.eval_env = VecEnv(cfg, cfg.algo.gamma, training=False) if cfg.eval_episodes else None
        self.next_log = (member.frame // cfg.log_frequency + 1) * cfg.log_frequency
        self.last_frame, self.last_time = member.frame, time.perf_counter()
        self.started = time.perf_counter() - member.wall
        self.episodes: list[float] = []
        self.losses: dict[str, float] = {}

    def add_episodes(self, returns: list[float]) -> None:
        self.member.recent.extend(returns)
        self.episodes.extend(returns)

    def add_losses(self, losses: dict[str, float]) -> None:
        """The agent's latest figures; a value it did not compute now (NaN) keeps the last."""
        self.losses |= {key: v for key, v in losses.items() if not np.isnan(v)}

    @property
    def due(self) -> bool:
        member = self.member
        return member.error is None and (
            member.frame >= self.next_log or member.frame >= member.max_frame
        )

    def log_point(self, greedy: Callable[[np.ndarray], np.ndarray], obs_rms) -> float:
        """The log row (and evaluation with `greedy` and the training statistics `obs_rms`);
        returns the score its reporter judges (total_reward_ma or eval_return)."""
        member, cfg = self.member, self.member.cfg
        now = time.perf_counter()
        row = {
            "frame": member.frame,
            "total_reward_ma": member.total_reward_ma,
            "episode_return": float(np.mean(self.episodes)) if self.episodes else np.nan,
            "fps": (member.frame - self.last_frame) / (now - self.last_time),  # training only
        }
        if self.eval_env is not None:
            self.eval_env.obs_rms = obs_rms
            seed = EVAL_SEED + member.seed + member.frame
            row["eval_return"] = evaluate(self.eval_env, greedy, seed, cfg.env.eval_epsilon)
        self.last_time = time.perf_counter()
        member.wall = self.last_time - self.started
        member.history.append(row | {"wall_s": member.wall, **self.losses})
        self.logger.log(member.history)
        self.episodes, self.last_frame = [], member.frame
        self.next_log = (member.frame // cfg.log_frequency + 1) * cfg.log_frequency
        return row.get("eval_return", np.nan) if cfg.objective == "eval" else row["total_reward_ma"]

    @property
    def best(self) -> bool:
        """Whether the last evaluation is the best so far (the best model is saved then)."""
        evals = [row["eval_return"] for row in self.member.history if "eval_return" in row]
        return bool(evals) and not evals[-1] <= max(evals[:-1], default=-np.inf)

    def close(self) -> None:
        self.logger.close()
        if self.eval_env is not None:
            self.eval_env.close()
