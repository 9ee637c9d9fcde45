"""A population job of a batched search (`hydra.sweeper.population=P`): one process trains the
trials its controller assigns through its inbox (rlhp.inbox) as one population of P trials x
max_session members, refilling a trial's slots with the next assigned trial as it ends.

Every member is an ordinary trial session: it trains in the trial's folder (written by the
controller: .hydra/config.yaml) with its own metrics, TensorBoard run, checkpoints and models,
reports to ASHA as its trial (the mean over the trial's sessions, in lockstep), and the trial's
result.yaml is written the moment its last session ends. A trial folder another process still
holds (a stale job of a killed controller) is taken once it is free, and resumes from its
checkpoints.
"""

import logging
import time
from collections import Counter, deque
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rlhp import asha
from rlhp.config import population_size
from rlhp.inbox import Inbox
from rlhp.member import Member, Preempted
from rlhp.population import Population
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
            members = [Member(cfg, run_dir, s) for s in range(cfg.max_session)]
            lockstep(members, asha.reporter(cfg, self.sweep_dir, number))
            self.running[run_dir] = (members, lock)
            self.queue.extend(members)

    def next(self) -> Member | None:
        if not self.queue:
            self.take()
        return self.queue.popleft() if self.queue else None

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
        del self.running[member.run_dir]
        self.ended += 1


def main(cfg: DictConfig) -> float:
    """A population job's own entry (the task function the sweeper launches it with): its size
    is its own hydra.sweeper.population, its inbox in its own folder; returns how many trials
    ended."""
    hydra_cfg = HydraConfig.get()
    sweep_dir, folder = Path(hydra_cfg.sweep.dir), Path(hydra_cfg.runtime.output_dir)
    size, _ = population_size(hydra_cfg.sweeper.population, hydra_cfg.sweeper.n_trials)
    return train_batch(cfg, sweep_dir, folder, size)


def train_batch(cfg: DictConfig, sweep_dir: Path, folder: Path, population: int) -> float:
    """Train the trials assigned to the inbox in `folder`, `population` trials at once; returns
    how many ended."""
    torch.set_num_threads(cfg.torch_threads)
    trials = Trials(Inbox(folder), sweep_dir)
    while not trials.queue and trials.more():
        trials.take()
        if not trials.queue:
            time.sleep(0.2)
    if not trials.queue:
        return 0.0
    first = trials.queue[0].cfg
    size = population * first.max_session
    log.info("rlhp: population job of %d trials at once (%d members)", population, size)
    members = [trials.queue.popleft() for _ in range(min(size, len(trials.queue)))]
    stop = StopOnSignal()
    stop.session = population = Population(
        members,
        device(first.device),
        refill=trials.next,
        waiting=trials.more,
        on_finish=trials.finished,
        size=size,
    )
    population.stop_requested = stop.received is not None
    try:
        population.run()
    except Preempted:
        stop.hand_over()
        raise
    log.info("rlhp: population job ended: %d trials", trials.ended)
    return float(trials.ended)
