"""Populations: K members (configurations and seeds) trained in lockstep as one batched
computation, for the algorithms whose agents are stacked (PPO, A2C); K = 1 is a single run.

A member is one session of one trial: its config, run directory and session number. Each keeps
everything a single run keeps (metrics.csv rows, a TensorBoard run, checkpoints, final and best
model, a reporter for ASHA), and nothing couples it to the others: weights, optimiser state,
hyperparameters, observation and reward statistics and random streams are per member. Members
share the *structural signature* of their configs (what changes tensor shapes or the loop's
schedule). A member that ends (done, stopped by its reporter, or failed with a non-finite loss)
frees its slot, which `refill` may give to a new member at the next rollout boundary.
"""

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlhp import algo as algos
from rlhp.env import VecEnv
from rlhp.errors import ConfigError
from rlhp.log import Logger, flatten
from rlhp.loop import EVAL_SEED, Preempted, Reporter, evaluate, save_checkpoint, summarize

# Per member besides the algorithm's MEMBER_KEYS; every other config value is structural.
FREE = ("seed", "meta", "env.eval_epsilon")


def is_member_key(algo: str, key: str) -> bool:
    """Whether config key `key` (dotted) may differ between the members of a population."""
    if key in {f"algo.{k}" for k in algos.member_keys(algo)}:
        return True
    return any(key == f or key.startswith(f"{f}.") for f in FREE)


def signature(cfg: DictConfig) -> dict:
    """What two configs must share to train in one population: every value but the per-member
    hyperparameters, the seed and the search metadata (as flat `key: value`)."""
    items = flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in items.items() if not is_member_key(cfg.algo.name, k)}


def check_structure(cfgs: list[DictConfig]) -> None:
    """Raise ConfigError naming the first key in which a config differs structurally."""
    if cfgs[0].algo.name not in algos.POPULATION:
        raise ConfigError(f"algo {cfgs[0].algo.name} does not train in populations")
    first = signature(cfgs[0])
    for i, cfg in enumerate(cfgs[1:], 1):
        other = signature(cfg)
        for key in sorted(first.keys() | other.keys()):
            if first.get(key) != other.get(key):
                raise ConfigError(
                    f"configs 0 and {i} differ in {key} ({first.get(key)!r} vs "
                    f"{other.get(key)!r}), which is structural: they cannot share a population"
                )


@dataclass
class Member:
    """One session of one trial, trained in a population slot."""

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
    lockstep: "Lockstep | None" = None  # the trial's sessions, when they train together

    @property
    def seed(self) -> int:
        return self.cfg.seed + self.session

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoints" / f"session{self.session}.pt"

    @property
    def done(self) -> bool:
        return (
            self.error is not None
            or self.stopped_at is not None
            or self.frame >= self.cfg.env.max_frame
        )

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
        """The member's checkpoint: bookkeeping, its slice of the agent and env statistics
        (its random streams are in the agent's: nothing global)."""
        state = {"frame": self.frame, "wall": self.wall, "history": self.history}
        state |= {"recent": list(self.recent), "stopped_at": self.stopped_at}
        save_checkpoint(state | {"agent": agent, "env": env}, self.ckpt_path)


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


class Slot:
    """A member in training: its place in the population and its per-run services."""

    def __init__(self, member: Member, resumed: bool, eval_env: VecEnv | None):
        self.member, self.eval_env = member, eval_env
        cfg = member.cfg
        purge = member.frame + 1 if resumed else None
        self.logger = Logger(member.run_dir, member.session, purge_step=purge)
        self.next_log = (member.frame // cfg.log_frequency + 1) * cfg.log_frequency
        self.last_frame, self.last_time = member.frame, time.perf_counter()
        self.started = time.perf_counter() - member.wall
        self.episodes: list[float] = []
        self.losses: dict[str, float] = {}


class Population:
    """Trains `members` (sharing one structural signature) in lockstep in `size` slots (default:
    one each); `refill()` gives a new member for a free slot, or None for now; `run()` returns
    when no slot holds a member and `waiting()` says none will come; `on_finish(member)` is
    called as each member ends."""

    def __init__(
        self,
        members: list[Member],
        device: torch.device,
        refill: Callable[[], Member | None] | None = None,
        waiting: Callable[[], bool] | None = None,
        on_finish: Callable[[Member], None] | None = None,
        size: int | None = None,
    ):
        cfgs = [m.cfg for m in members]
        check_structure(cfgs)
        cfg = self.cfg = cfgs[0]
        size = size or len(members)
        cfgs += [cfg] * (size - len(cfgs))  # empty slots wait for refill
        self.device = device
        self.refill = refill or (lambda: None)
        self.waiting = waiting or (lambda: False)
        self.on_finish = on_finish or (lambda member: None)
        self.stop_requested = False  # set from a signal handler: checkpoint and raise Preempted
        self.env = VecEnv(cfg, [c.algo.gamma for c in cfgs], members=size)
        self.agent = algos.make_population(cfgs, self.env, device)
        self.slots: list[Slot | None] = [None] * size
        self.finished: list[Member] = []
        self.obs = self.env.reset([c.seed for c in cfgs])
        for k in range(len(members), size):  # defined weights, no member
            self.agent.set_member(k, cfg.algo, seed=k)
        self.agent.active[:] = False
        for k, member in enumerate(members):
            self._start(k, member)
        self.frames = np.array([s.member.frame if s else 0 for s in self.slots])
        self._fill()

    def _start(self, k: int, member: Member) -> bool:
        """Put `member` (fresh or from its checkpoint) in slot k; False (and the member among
        the finished) when its checkpoint says it is done."""
        self.agent.set_member(k, member.cfg.algo, member.seed)
        state = member.load()
        if member.done:
            self._done(member)
            self.agent.active[k] = False
            return False
        if member.cfg is not self.cfg:
            check_structure([self.cfg, member.cfg])
        rows = slice(k * self.env.num_envs, (k + 1) * self.env.num_envs)
        self.obs[rows] = self.env.reset_member(k, member.seed + member.frame, member.cfg.algo.gamma)
        if state is not None:
            self.agent.load_member_state(k, state["agent"])
            self.env.load_state_dict(state["env"], k)
        eval_env = None
        if member.cfg.eval_episodes:
            eval_env = VecEnv(member.cfg, member.cfg.algo.gamma, training=False)
        self.slots[k] = Slot(member, state is not None, eval_env)
        return True

    def _fill(self) -> None:
        """Offer the empty slots to new members while `refill` has one; once it has none, the
        next boundary asks again (one call, not one per empty slot: a refill may read a file)."""
        for k, slot in enumerate(self.slots):
            while slot is None:
                if (member := self.refill()) is None:
                    return
                if self._start(k, member):
                    slot = self.slots[k]
                    self.frames[k] = member.frame

    def run(self) -> list[Member]:
        """Train until every slot is empty and `waiting()` says no member will come; returns
        the members in the order they finished."""
        env, agent, num_envs, frames = self.env, self.agent, self.env.num_envs, self.frames
        try:
            while any(self.slots) or self.waiting():
                if not any(self.slots):  # nothing to train until a member comes
                    time.sleep(0.2)
                    self._fill()
                    continue
                self.obs, reward, terminated, truncated, final_obs = env.step(agent.act(self.obs))
                frames += num_envs
                agent.observe(self.obs, reward, terminated, truncated, final_obs)
                losses = agent.update(frames)
                for slot, returns in zip(self.slots, env.pop_member_episodes(), strict=True):
                    if slot is not None:
                        slot.member.recent.extend(returns)
                        slot.episodes.extend(returns)
                if agent.at_boundary:
                    self._boundary(losses)
                if self.stop_requested:
                    for k, slot in enumerate(self.slots):
                        if slot is not None:
                            slot.member.wall = time.perf_counter() - slot.started
                            self._save(k, slot)
                    raise Preempted(f"population checkpointed at frame {frames.max()}")
        finally:
            self.close()
        return self.finished

    def _boundary(self, losses: dict[str, np.ndarray] | None) -> None:
        """Between rollouts: log points, then the reporters' decisions (a trial's sessions
        decide together), checkpoints, and the freed slots refilled."""
        due = []
        for k, slot in enumerate(self.slots):
            if slot is None:
                continue
            member = slot.member
            member.frame = int(self.frames[k])
            if losses is not None:
                slot.losses = {key: float(v[k]) for key, v in losses.items() if key != "failed"}
                if losses["failed"][k] != 0:
                    member.error = (
                        f"{self.cfg.algo.name.upper()} loss is {losses['failed'][k]} "
                        f"at frame {member.frame}"
                    )
            if (score := self._log_point(k, slot)) is not None:
                due.append((k, slot, score))
        for _, slot, score in due:
            member = slot.member
            if member.reporter is not None and not member.reporter(member.frame, score):
                member.stopped_at = member.frame
        for k, slot, _ in due:
            member = slot.member
            if member.lockstep is not None and member.lockstep.stopped_at is not None:
                member.stopped_at = member.stopped_at or member.frame
            self._save(k, slot)
        for k, slot in enumerate(self.slots):
            if slot is not None and slot.member.done:
                self._finish(k, slot)
        self._fill()

    def _log_point(self, k: int, slot: Slot) -> float | None:
        """At a log point (or the end) of member k: metrics and evaluation; returns the score
        the reporter judges (total_reward_ma or eval_return), None between log points."""
        member, cfg = slot.member, slot.member.cfg
        if member.error is not None or (
            member.frame < slot.next_log and member.frame < cfg.env.max_frame
        ):
            return None
        now = time.perf_counter()
        row = {
            "frame": member.frame,
            "total_reward_ma": member.total_reward_ma,
            "episode_return": float(np.mean(slot.episodes)) if slot.episodes else np.nan,
            "fps": (member.frame - slot.last_frame) / (now - slot.last_time),
        }
        if slot.eval_env is not None:
            row["eval_return"] = self._evaluate(k, slot)
            best = member.summary()["eval_best"]
            if np.isnan(best) or row["eval_return"] > best:
                self._save_model(k, member, "_best")
        slot.last_time = time.perf_counter()
        member.wall = slot.last_time - slot.started
        member.history.append(row | {"wall_s": member.wall, **slot.losses})
        slot.logger.log(member.history)
        slot.episodes, slot.last_frame = [], member.frame
        slot.next_log = (member.frame // cfg.log_frequency + 1) * cfg.log_frequency
        return row.get("eval_return", np.nan) if cfg.objective == "eval" else row["total_reward_ma"]

    def _evaluate(self, k: int, slot: Slot) -> float:
        env, member = slot.eval_env, slot.member
        env.obs_rms = self.env.obs_rms.member(k)
        seed = EVAL_SEED + member.seed + member.frame
        greedy = lambda obs: self.agent.greedy(obs, k)  # noqa: E731
        return evaluate(env, greedy, seed, member.cfg.env.eval_epsilon)

    def _save(self, k: int, slot: Slot) -> None:
        slot.member.save(self.agent.member_state(k), self.env.state_dict(k))

    def _save_model(self, k: int, member: Member, suffix: str = "") -> None:
        """Member k's net (parameters by name, as one member) and optimiser state."""
        path = member.run_dir / f"model_session{member.session}{suffix}.pt"
        torch.save(self.agent.member_state(k), path)

    def _finish(self, k: int, slot: Slot) -> None:
        member = slot.member
        if member.error is None:
            self._save_model(k, member)
        slot.logger.close()
        if slot.eval_env is not None:
            slot.eval_env.close()
        self.slots[k] = None
        self.agent.active[k] = False
        self._done(member)

    def _done(self, member: Member) -> None:
        self.finished.append(member)
        if member.error is not None and member.lockstep is not None:
            member.lockstep.stopped_at = member.frame  # a failed session ends its trial
        self.on_finish(member)

    def close(self) -> None:
        for slot in self.slots:
            if slot is not None:
                slot.logger.close()
                if slot.eval_env is not None:
                    slot.eval_env.close()
        self.env.close()
