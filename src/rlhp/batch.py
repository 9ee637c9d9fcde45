"""A population job of a batched search (`hydra.sweeper.population=P`): one process trains the
trials its controller assigns through its inbox (rlhp.inbox), giving a trial's member indices to
the next assigned trial of its structure as it ends. Its trials of one structural signature
(rlhp.config.signature) train as one structure group, a population of its own (VecEnv, stacked
agent) of P / G trials x max_session members; with `hydra.sweeper.structure_groups=G` a job
holds up to G groups and steps them in turn, one rollout each (G = 1: one population of P).

Every member is an ordinary trial session: it trains in the trial's folder (written by the
controller: .hydra/config.yaml) with its own metrics, TensorBoard run, checkpoints and models,
reports to ASHA as its trial (the mean over the trial's sessions, in lockstep), and the trial's
result.yaml is written the moment its last session ends. A trial folder another process still
holds (a stale job of a killed controller) is taken once it is free, and resumes from its
checkpoints.
"""

import functools
import json
import logging
import time
from collections import Counter, deque
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rlhp import asha
from rlhp.config import population_size, signature
from rlhp.errors import Preempted
from rlhp.inbox import Inbox, group_size
from rlhp.member import Member
from rlhp.population import REFILL_S, Population
from rlhp.record import TrialResult, config_path
from rlhp.trial import StopOnSignal, device, lockstep, write_result

log = logging.getLogger("rlhp")


class Trials:
    """The trials of one population job: taken from the inbox, their members queued for slots,
    their results written when their last member ends."""

    def __init__(self, inbox: Inbox, sweep_dir: Path):
        self.inbox, self.sweep_dir = inbox, sweep_dir
        self.queue: deque[Member] = deque()
        self.waiting: list[tuple[int, Path]] = []  # held by another process
        self.running: dict[Path, tuple[list[Member], FileLock]] = {}
        self.members_ended: Counter[Path] = Counter()
        self.kinds: dict[Path, str] = {}  # a running trial's structural signature, as JSON
        self.ended = 0

    def take(self) -> None:
        """Queue the members of newly assigned trials (and of those now free)."""
        todo, self.waiting = self.waiting + self.inbox.take(), []
        for number, run_dir in todo:
            lock = FileLock(run_dir / ".lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                self.waiting.append((number, run_dir))
                continue
            cfg = OmegaConf.load(config_path(run_dir))
            self.kinds[run_dir] = json.dumps(signature(cfg), sort_keys=True, default=str)
            members = [Member(cfg, run_dir, s) for s in range(cfg.max_session)]
            lockstep(members, asha.reporter(cfg, self.sweep_dir, number))
            self.running[run_dir] = (members, lock)
            self.queue.extend(members)

    def next(self, kind: str | None = None) -> Member | None:
        """The next queued member (of structure `kind`), None: none for now."""
        if not self.queued(kind):
            self.take()
        for member in self.queue:
            if kind is None or self.kinds[member.run_dir] == kind:
                self.queue.remove(member)
                return member
        return None

    def queued(self, kind: str | None = None) -> bool:
        return any(kind is None or self.kinds[m.run_dir] == kind for m in self.queue)

    def more(self) -> bool:
        return bool(self.queue or self.waiting) or self.inbox.open

    def finished(self, member: Member) -> None:
        members, lock = self.running[member.run_dir]
        self.members_ended[member.run_dir] += 1
        if self.members_ended[member.run_dir] < len(members):
            return
        del self.members_ended[member.run_dir]
        errors = [f"session {m.session}: {m.error}" for m in members if m.error is not None]
        if errors:
            TrialResult.failure(errors[0]).write(member.run_dir)
        else:
            write_result(member.cfg, member.run_dir, [m.summary() for m in members])
        lock.release()
        del self.running[member.run_dir], self.kinds[member.run_dir]
        self.ended += 1


class Groups:
    """The structure groups of one population job: a Population per structure among its
    trials, each of `size` trials, stepped in turn a rollout each (the controller decides how
    many: its open groups and those it retired, training on). A group's freed member indices
    take the job's next trials of its structure; a group with no member and none queued ends; a
    structure with no group starts one."""

    def __init__(self, trials: Trials, size: int):
        self.trials, self.size = trials, size
        self.live: dict[str, Population] = {}
        self.stop_requested = False  # set from a signal handler: checkpoint and raise Preempted
        self.taken = 0.0  # when the inbox was last read for new structures

    def run(self) -> None:
        """Train until every group ended and the inbox is closed and drained."""
        try:
            while self.live or self.trials.more():
                if self.stop_requested:
                    self.checkpoint()
                self.start()
                stepped = False
                for kind in list(self.live):
                    stepped |= self.rollout(kind)
                    if self.stop_requested:
                        self.checkpoint()
                if not stepped:
                    time.sleep(0.2)
        finally:
            for population in self.live.values():
                population.close()

    def rollout(self, kind: str) -> bool:
        """A rollout of the group of structure `kind`; False when it had no member to step (it
        ends if its free indices found none to take either)."""
        population = self.live[kind]
        if population.rollout():
            return True
        if not any(population.running):
            population.close()
            del self.live[kind]
        return False

    def start(self) -> None:
        """A group for each queued structure without one (the inbox read REFILL_S apart)."""
        if time.monotonic() - self.taken > REFILL_S:
            self.trials.take()
            self.taken = time.monotonic()
        kinds = self.trials.kinds
        while True:
            member = next((m for m in self.trials.queue if kinds[m.run_dir] not in self.live), None)
            if member is None:
                return
            kind, size = kinds[member.run_dir], self.size * member.cfg.max_session
            members = [self.trials.next(kind) for _ in range(size) if self.trials.queued(kind)]
            self.live[kind] = Population(
                members,
                device(member.cfg.device),
                refill=functools.partial(self.trials.next, kind),
                on_finish=self.trials.finished,
                size=size,
            )
            trials = ", ".join(sorted({m.run_dir.name for m in members}))
            log.info("rlhp: structure group of trials %s started (%d live)", trials, len(self.live))

    def checkpoint(self) -> None:
        """Every group's members checkpointed; raises Preempted."""
        for population in self.live.values():
            try:
                population.checkpoint()
            except Preempted:
                pass
        raise Preempted(f"population job checkpointed: {len(self.live)} structure groups")


def main(cfg: DictConfig) -> float:
    """A population job's own entry (the task function the sweeper launches it with): its size
    and structure groups are its own hydra.sweeper.population and structure_groups, its inbox in
    its own folder; returns how many trials ended."""
    hydra_cfg = HydraConfig.get()
    sweep_dir, folder = Path(hydra_cfg.sweep.dir), Path(hydra_cfg.runtime.output_dir)
    sweeper = hydra_cfg.sweeper
    size, _ = population_size(sweeper.population, sweeper.n_trials)  # as the sweeper caps it
    return train_batch(cfg, sweep_dir, folder, size, Inbox(folder).groups)


def train_batch(
    cfg: DictConfig, sweep_dir: Path, folder: Path, population: int, groups: int = 1
) -> float:
    """Train the trials assigned to the inbox in `folder`, `population` trials at once in up to
    `groups` structure groups; returns how many ended."""
    torch.set_num_threads(cfg.torch_threads)
    log.info("rlhp: population job of %d trials at once (%d structure groups)", population, groups)
    trials = Trials(Inbox(folder), sweep_dir)
    stop = StopOnSignal()
    stop.session = job = Groups(trials, group_size(population, groups))
    job.stop_requested = stop.received is not None
    try:
        job.run()
    except Preempted:
        stop.hand_over()
        raise
    log.info("rlhp: population job ended: %d trials", trials.ended)
    return float(trials.ended)
