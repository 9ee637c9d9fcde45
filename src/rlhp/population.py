"""The train loop of every algorithm: K members (configurations and seeds) trained in lockstep as
one batched computation by a stacked agent (rlhp.algo); K = 1 is a single run.

Each member keeps everything a single run keeps (rlhp.member: metrics rows, a TensorBoard run,
checkpoints, final and best model, a reporter for ASHA), and nothing couples it to the others:
weights, optimiser state, hyperparameters, replay memory, observation and reward statistics and
random streams are per member. Members share the *structural signature* of their configs (what
changes tensor shapes or the loop's schedule). A member that ends (done, stopped by its
reporter, or failed with a non-finite loss) frees its index on the member axis, which `refill`
may give to a new member at the next boundary of the agent (between rollouts; any step
off-policy).
"""

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from rlhp import algo as algos
from rlhp.config import check_structure
from rlhp.env import VecEnv
from rlhp.errors import ConfigError, Preempted
from rlhp.member import Lockstep, Member, Training
from rlhp.stack import Stacked

__all__ = [
    "Lockstep", "Member", "Population", "available_memory", "check_memory", "member_bytes",
]  # fmt: skip

# about the memory of one env copy beside the rollout: a gym env's state, ALE's emulator
ENV_COPY_BYTES = {"gym": 64 * 2**10, "atari": 4 * 2**20}

REFILL_S = 1.0  # how often free indices ask `refill` for a member (it may read a file)


def member_bytes(cfg: DictConfig) -> int:
    """About the memory of one population member of config `cfg`: each parameter of its nets
    four times in float32 (weights, gradients, the optimiser's two moments), its rollout twice
    (the buffers and the minibatches gathered from them) or its replay memory of memory_size
    frames, its env copies. Measured on a one-member agent with a one-row replay memory."""
    probe = cfg.copy()
    if "memory_size" in probe.algo:
        probe.algo.memory_size = probe.env.num_envs
    env = VecEnv(probe, probe.algo.gamma)
    agent = algos.make([probe], env, torch.device("cpu"))
    env.close()
    parts = vars(agent).values()
    params = sum(part.flat.numel() for part in parts if isinstance(part, Stacked))
    buffers = 0
    if (memory := getattr(agent, "memory", None)) is not None:
        buffers = cfg.algo.memory_size * memory.bytes_per_frame
    elif (rollout := getattr(agent, "rollout", None)) is not None:
        tensors = [t for t in vars(rollout).values() if isinstance(t, torch.Tensor)]
        buffers = 2 * sum(t.nbytes for t in tensors)
    return 16 * params + buffers + cfg.env.num_envs * ENV_COPY_BYTES[cfg.env.type]


def available_memory() -> int:
    """Bytes of memory this machine can give now without swapping (MemAvailable)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(cfg: DictConfig) -> None:
    """ConfigError when the max_session members of `cfg` (their replay memories above all)
    cannot fit in the memory this machine has free now."""
    need, free = cfg.max_session * member_bytes(cfg), available_memory()
    if need > free:
        raise ConfigError(
            f"max_session={cfg.max_session} members of {cfg.algo.name} need about "
            f"{need / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB free: lower "
            "max_session" + (" or algo.memory_size" if "memory_size" in cfg.algo else "")
        )


class Population:
    """Trains `members` (sharing one structural signature) in lockstep on a member axis of `size`
    (default: one each); `running[k]` is the member training at index k, None where k is free.
    `refill()` gives a new member for a free index, or None for now; `run()` returns when no
    index holds a member and `waiting()` says none will come; `on_finish(member)` is
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
        cfgs += [cfg] * (size - len(cfgs))  # free indices wait for refill
        self.device = device
        self.refill = refill or (lambda: None)
        self.waiting = waiting or (lambda: False)
        self.on_finish = on_finish or (lambda member: None)
        self.stop_requested = False  # set from a signal handler: checkpoint and raise Preempted
        self.env = VecEnv(cfg, [c.algo.gamma for c in cfgs], members=size)
        self.agent = algos.make(cfgs, self.env, device)
        self.running: list[Training | None] = [None] * size
        self.finished: list[Member] = []
        self.obs = self.env.reset([c.seed for c in cfgs])
        for k in range(len(members), size):  # defined weights, no member
            self.agent.set_member(k, cfg.algo, seed=k)
        self.agent.active[:] = False
        for k, member in enumerate(members):
            self._start(k, member)
        self.frames = np.array([t.member.frame if t else 0 for t in self.running])
        self.refilled = 0.0  # when free indices last asked for a member
        self._fill()

    def _start(self, k: int, member: Member) -> bool:
        """Put `member` (fresh or from its checkpoint) at index k; False (and the member among
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
        self.running[k] = Training(member, state is not None)
        return True

    def _fill(self) -> None:
        """Offer the free indices to new members while `refill` has one; once it has none, ask
        again REFILL_S later (one call, not one per free index: a refill may read a file)."""
        self.refilled = time.monotonic()
        for k, training in enumerate(self.running):
            while training is None:
                if (member := self.refill()) is None:
                    return
                if self._start(k, member):
                    training = self.running[k]
                    self.frames[k] = member.frame

    def run(self) -> list[Member]:
        """Train until every index is free and `waiting()` says no member will come; returns
        the members in the order they finished."""
        try:
            while any(self.running) or self.waiting():
                if not self.step():  # nothing to train until a member comes
                    time.sleep(0.2)
        finally:
            self.close()
        return self.finished

    def step(self) -> bool:
        """One env step of the members, and the boundary's decisions when the agent reaches
        one; False, with no member to step, once the free indices asked `refill` again.
        Preempted (every member checkpointed) when a stop was requested."""
        if not any(self.running):
            self._fill()
            return False
        env, agent, frames = self.env, self.agent, self.frames
        active = agent.active.host  # idle members' copies do not step (no device sync)
        self.obs, reward, terminated, truncated, final_obs = env.step(
            agent.act(self.obs), None if active.all() else active
        )
        frames += env.num_envs
        agent.observe(self.obs, reward, terminated, truncated, final_obs)
        if (losses := agent.update(frames)) is not None:
            self._losses(losses)
        for training, returns in zip(self.running, env.pop_member_episodes(), strict=True):
            if training is not None and returns:
                training.add_episodes(returns)
        if agent.at_boundary:
            self._boundary()
        if self.stop_requested:
            self.checkpoint()
        return True

    def rollout(self) -> bool:
        """Env steps up to the agent's next boundary (a rollout on-policy, one step
        off-policy); False when there was no member to step."""
        while self.step():
            if self.agent.at_boundary:
                return True
        return False

    def checkpoint(self) -> None:
        """Every member checkpointed where it is; raises Preempted."""
        self._checkpoint_all()
        raise Preempted(f"population checkpointed at frame {self.frames.max()}")

    def _losses(self, losses: dict[str, np.ndarray]) -> None:
        """The agent's figures of this update; a member whose loss went non-finite fails."""
        failed = losses.pop("failed")
        for k, training in enumerate(self.running):
            if training is None:
                continue
            training.add_losses({key: float(v[k]) for key, v in losses.items()})
            if failed[k] != 0 and training.member.error is None:
                name = self.cfg.algo.name.upper()
                training.member.error = f"{name} loss is {failed[k]} at frame {self.frames[k]}"

    def _boundary(self) -> None:
        """Where a checkpoint loses nothing: log points, then the reporters' decisions (a
        trial's sessions decide together), checkpoints, and the freed indices refilled."""
        due = []
        for k, training in enumerate(self.running):
            if training is None:
                continue
            training.member.frame = int(self.frames[k])
            if training.due:
                due.append((k, training, self._log_point(k, training)))
        for _, training, score in due:
            training.member.report(score)
        for k, training, _ in due:
            training.member.follow()
            self._save(k, training)
        ended = [k for k, t in enumerate(self.running) if t is not None and t.member.done]
        for k in ended:
            self._finish(k, self.running[k])
        if ended or None in self.running and time.monotonic() - self.refilled > REFILL_S:
            self._fill()

    def _log_point(self, k: int, training: Training) -> float:
        """Member k's log row and evaluation (its best model saved); the score to judge."""
        greedy = lambda obs: self.agent.greedy(obs, k)  # noqa: E731
        score = training.log_point(greedy, self.env.obs_rms.member(k))
        if training.best:
            training.member.save_model(self.agent.member_state(k), "_best")
        return score

    def _save(self, k: int, training: Training) -> None:
        training.member.wall = time.perf_counter() - training.started
        training.member.save(self.agent.member_state(k), self.env.state_dict(k))

    def _checkpoint_all(self) -> None:
        for k, training in enumerate(self.running):
            if training is not None:
                training.member.frame = int(self.frames[k])
                self._save(k, training)

    def _finish(self, k: int, training: Training) -> None:
        member = training.member
        if member.error is None:
            member.save_model(self.agent.member_state(k))
        training.close()
        self.running[k] = None
        self.agent.active[k] = False
        self._done(member)

    def _done(self, member: Member) -> None:
        self.finished.append(member)
        if member.error is not None:
            member.failed()
        self.on_finish(member)

    def close(self) -> None:
        for training in self.running:
            if training is not None:
                training.close()
        self.env.close()
