"""Batched search (`hydra.sweeper.population=P`): each slot is one process (a population job,
rlhp.batch) training up to P trials at once, refilled from the study as its trials end.

The controller asks the study for trials as the one-process-per-trial loop does (constraints,
budgets, priors, resume), writes each trial's folder (.hydra/config.yaml, overrides.yaml,
hydra.yaml) and assigns the trial through a job's inbox (rlhp.inbox). Trials whose structural
signature differs (rlhp.config.signature: hid_layers, time_horizon, ...) never share a
population.
When the space has structural dimensions, a job holds up to G open structure groups
(`structure_groups`, rlhp.batch: each its own population of P / G trials, stepped in turn): the
trial asked to fill a job draws them freely while it has fewer than G open groups, else has them
fixed to the values of its open group with the fewest trials (Optuna's PartialFixedSampler), so
every job stays full: the sampler explores structure once per group, and everything else per
trial. A group is retired once it was given `population_trials` trials (by default its
population, P / G): it takes no new trial and trains on until its trials end, and the job opens
a new group, whose structure is drawn again, as soon as the slot's retired groups have at most
half the job's population training (ASHA stops members one by one). The job's process stays:
a search starts one process per slot, not one per group, until the job has run half its time
limit (hydra.launcher.timeout_min): it is then retired (its inbox closed, it ends when its
trials end) and its slot starts a new job as soon as the retired one has at most half its
population training, the two sharing the slot until it ends. A slot so holds at most one and
a half populations (the memory check counts that).
With a grid (grid, dgd) nothing is fixed: a proposal no job of its kind has room for starts
its own job in a free slot or waits for one, and a job with nothing left to do gives its slot
up. A job holds its P trials plus one queued, so a freed member slot refills at the next
rollout boundary. Each trial's result.yaml is recorded the moment it appears (an unreadable one
is set aside). A job killed by a signal has its unfinished trials assigned again, to resume from
their checkpoints (max_retries); one that crashes fails them with its error line, and the search
goes on. Killed at any moment, the same command resumes: the trials that were running are
assigned again and resume from their checkpoints.
"""

import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import Trial

from rlhp import record
from rlhp.config import is_member_key, signature
from rlhp.inbox import Inbox, group_size
from rlhp.sweep import _results
from rlhp.sweep._launch import Launch, population_overrides
from rlhp.sweep._loop import NOWHERE
from rlhp.sweep._source import TrialSource

log = logging.getLogger("rlhp.sweep")


@dataclass
class Proposal:
    trial: Trial
    run_dir: Path
    overrides: list[str]
    kind: str  # the structural signature, as JSON
    fixed: dict[str, Any]  # its structural parameters, as its group's trials are asked with


@dataclass
class PopulationJob:
    number: int
    slot: int
    inbox: Inbox
    future: Future
    trials: dict[int, Proposal] = field(default_factory=dict)  # assigned, not recorded yet
    kinds: dict[str, dict[str, Any]] = field(default_factory=dict)  # its open groups, as asked
    given: Counter[str] = field(default_factory=Counter)  # trials given to each open group
    started: float = field(default_factory=time.monotonic)
    closed: bool = False
    retired: bool = False  # closed at half its time limit

    def groups(self) -> dict[str, int]:
        """Its open structure groups: trials in flight of each."""
        flying = Counter(p.kind for p in self.trials.values())
        return {kind: flying[kind] for kind in self.kinds}

    def room(self, size: int) -> bool:
        """Open, with at most `size` trials (its population) in its open groups."""
        return not self.closed and sum(self.groups().values()) <= size

    def retiring(self) -> int:
        """Its trials in flight that no open group holds: those of its retired groups, or all
        of them once it is closed."""
        if self.closed:
            return len(self.trials)
        return sum(p.kind not in self.kinds for p in self.trials.values())

    def close(self) -> None:
        """No more trials: the job ends once those it has end."""
        if not self.closed:
            self.inbox.close()
            self.closed = True


def retire_after(
    population_trials: int | None, size: int, fix: bool, structural: bool
) -> int | None:
    """How many trials a structure group is given before it is retired (None: never):
    `population_trials`, by default the group's population (`size`), when the space has
    structural dimensions and they are fixed per group (not with a grid)."""
    return (population_trials or size) if fix and structural else None


def placement(
    groups: dict[str, int], limit: int, size: int, opens: bool = True
) -> str | None | Literal[False]:
    """Where a job's next trial goes, given its open structure groups (signature: trials in
    flight): None (its structure drawn freely, a new group) while it has fewer than `limit` and
    `opens` a group, else the group with the fewest trials while that holds at most `size` (its
    population, one queued), else NOWHERE."""
    if len(groups) < limit and opens:
        return None
    if not groups:
        return NOWHERE
    kind = min(groups, key=groups.__getitem__)
    return kind if groups[kind] <= size else NOWHERE


def joins(
    groups: dict[str, int], kind: str, new_group: bool, limit: int, size: int, opens: bool = True
) -> bool:
    """Whether a trial of structure `kind` joins a job of these open structure groups: its group
    holds at most `size` trials (one queued), or, as a `new_group`, the job `opens` a group, has
    fewer than `limit` and none open of its structure."""
    if new_group:
        return opens and kind not in groups and len(groups) < limit
    return kind in groups and groups[kind] <= size


def opens(retiring: int, size: int) -> bool:
    """Whether a slot may open a structure group, given its trials in flight outside open groups
    (retired groups and a retired job's): at most half a population (`size`)."""
    return 2 * retiring <= size


def slot_trials(size: int) -> int:
    """The most trials a slot holds at once under `opens`: its open groups' population (`size`)
    and the retiring half of one (the memory check counts these)."""
    return size + size // 2


def slot_free(jobs: list[tuple[bool, int]], size: int) -> bool:
    """Whether a slot may start a job, given its jobs as (retired, trials in flight): when it has
    none, or one that is retired and `opens` a group."""
    return not jobs or (len(jobs) == 1 and jobs[0][0] and opens(jobs[0][1], size))


def job_error(job: PopulationJob, sweep_dir: Path) -> Exception | str:
    """Why an ended population job left trials unfinished, in one line naming its log: its
    exception's last line (or the signal that killed its process), or that it ended without
    them; an error of the sweep dir's disk as the exception (the sweeper stops on it)."""
    try:
        getattr(job.future.result(), "return_value", None)  # raises the job's own exception
    except Exception as e:
        if record.disk_errno(e, sweep_dir) is not None:
            return e
        log_file = f"{record.POPULATIONS}/{job.number}/train.log"
        return f"population job {job.number}: {_results.one_line(e)} (see {log_file})"
    return _results.ENDED_WITHOUT


def finished(proposal: Proposal) -> bool:
    """Whether the trial's result.yaml is there to record. An unreadable one (a corrupted
    file) is set aside: the trial trains on, or runs again, from its checkpoint."""
    run_dir = proposal.run_dir
    if not record.TrialResult.exists(run_dir):
        return False
    try:
        record.TrialResult.read(run_dir)
    except ValueError as e:
        aside = run_dir / f"{record.RESULT}.unreadable"
        (run_dir / record.RESULT).replace(aside)
        log.warning("trial %d: %s; moved to %s", proposal.trial.number, e, aside.name)
        return False
    return True


def prepare(
    compose: Callable[[list[str]], DictConfig],
    sweep_dir: Path,
    trial: Trial,
    overrides: list[str],
    structural: list[str],
) -> Proposal:
    """The trial's folder with its composed config, and its structure."""
    cfg = compose(overrides)
    run_dir = record.trial_dir(sweep_dir, trial.number)
    with open_dict(cfg):
        hydra = cfg.pop("hydra")
    record.write_run(run_dir, cfg, overrides, hydra)
    kind = json.dumps(signature(cfg), sort_keys=True, default=str)
    return Proposal(trial, run_dir, overrides, kind, {k: trial.params[k] for k in structural})


class Batched:
    """The batched strategy of the search loop (rlhp.sweep._loop)."""

    def __init__(
        self,
        source: TrialSource,
        launch: Launch,
        slots: int,
        size: int,
        compose: Callable[[list[str]], DictConfig],
    ):
        self.source, self.launch, self.slots, self.size = source, launch, slots, size
        self.compose, search = compose, source.search
        self.sweep_dir = search.sweep_dir
        self.jobs: list[PopulationJob] = []
        self.waiting: list[Proposal] = []  # no job of their kind has room yet
        self.pool = ThreadPoolExecutor(2 * slots)  # a retired job drains beside one
        timeout_min = OmegaConf.select(launch.config, "hydra.launcher.timeout_min")
        self.lifetime = 30.0 * timeout_min if timeout_min else None  # s: half the time limit
        algo = search.leaves["algo.name"]
        self.structural = [k for k in search.space if not is_member_key(algo, k)]
        self.fix = search.grid is None  # a grid's points stay whole
        self.groups = min(search.cfg.structure_groups, size) if self.structural else 1
        self.group_size = group_size(size, self.groups)  # a job's population over its groups
        self.retire = retire_after(
            search.cfg.population_trials, self.group_size, self.fix, bool(self.structural)
        )
        folder = self.sweep_dir / record.POPULATIONS
        taken = [int(p.name) for p in folder.glob("*") if p.name.isdigit()]
        self.numbers = itertools.count(max(taken, default=-1) + 1)  # never reuse an inbox

    # -- the Strategy interface

    def resume(self, trials: list[Trial]) -> None:
        self.waiting += [self.prepare(t) for t in trials]

    def room(self) -> dict[str, Any] | None | bool:
        """Where the next trial goes, as the structural parameters it is asked with: a group
        with room (its structure), a new group or job (None: free), or NOWHERE."""
        if len(self.waiting) >= self.size:
            return NOWHERE
        return self.target()

    def start(self, trial: Trial) -> None:
        proposal = self.prepare(trial)
        if not self.place(proposal):
            self.waiting.append(proposal)

    def collect(self) -> int:
        """Record the trials whose result appeared; those of jobs that ended without them run
        again (a job killed by a signal: max_retries) or fail with the job's error; then place
        the trials that wait where there is room. Returns how many were recorded."""
        for job in self.jobs:
            job.inbox.beat()
        self.retire_old()
        recorded = 0
        for job in list(self.jobs):
            ended = job.future.done()
            error = job_error(job, self.sweep_dir) if ended else None
            for number, proposal in list(job.trials.items()):
                if finished(proposal):
                    self.source.record(proposal.trial, proposal.run_dir)
                elif error is None:
                    continue
                elif self.source.retry(proposal.trial, error):
                    self.waiting.append(proposal)
                    del job.trials[number]
                    continue
                else:
                    self.source.fail(proposal.trial, error)
                del job.trials[number]
                recorded += 1
            if ended:
                self.jobs.remove(job)
        self.release_idle()
        self.waiting = [p for p in self.waiting if not self.place(p)]
        return recorded

    def closing(self) -> None:
        """No new trial: jobs end once their trials (and those waiting) are done."""
        if not self.waiting:
            for job in self.jobs:
                job.close()

    def busy(self) -> bool:
        return bool(self.jobs or self.waiting)

    def status(self) -> dict:
        members = sum(len(j.trials) for j in self.jobs) * self.source.search.leaves["max_session"]
        return {"jobs": len(self.jobs), "members": members}

    def wait(self) -> None:
        time.sleep(0.5)

    def shutdown(self) -> list[Trial]:
        self.pool.shutdown(wait=True, cancel_futures=True)
        return [p.trial for job in self.jobs for p in job.trials.values()]

    # -- jobs

    def prepare(self, trial: Trial) -> Proposal:
        overrides = self.source.search.trial_overrides(trial)
        return prepare(self.compose, self.sweep_dir, trial, overrides, self.structural)

    def place(self, proposal: Proposal) -> bool:
        """Assign to a running job with room in its group of that structure, or to one with
        room for a new group, else start a job; False: no room."""
        for new_group in (False, True):
            for job in (j for j in self.jobs if j.room(self.size)):
                groups, may_open = job.groups(), self.opens(job.slot)
                if joins(groups, proposal.kind, new_group, self.groups, self.group_size, may_open):
                    if new_group and job.trials:
                        log.info("population job %d: a group of %s", job.number, proposal.fixed)
                    self.assign(job, proposal)
                    return True
        if (slot := self.free_slot()) is None:
            return False
        number = next(self.numbers)
        inbox = Inbox(record.population_dir(self.sweep_dir, number))
        inbox.beat()
        inbox.set_groups(self.groups)
        overrides = population_overrides(self.source.search.fixed, number)
        future = self.pool.submit(self.launch.run, record.JOB_BASE + number, overrides, True)
        job = PopulationJob(number, slot, inbox, future)
        self.jobs.append(job)
        self.assign(job, proposal)
        log.info(
            "population job %d started (%s)", number, proposal.fixed or "no structural dimension"
        )
        return True

    def assign(self, job: PopulationJob, proposal: Proposal) -> None:
        kind = proposal.kind
        job.trials[proposal.trial.number] = proposal
        job.kinds.setdefault(kind, proposal.fixed)
        job.inbox.put(proposal.trial.number, proposal.run_dir)
        job.given[kind] += 1
        if self.retire is not None and job.given[kind] >= self.retire:
            del job.kinds[kind], job.given[kind]
            log.info(
                "population job %d: group of %s retired after %d trials",
                job.number,
                proposal.fixed,
                self.retire,
            )

    def retire_old(self) -> None:
        """Retire the jobs that ran half their time limit: their slots start new jobs."""
        if self.lifetime is None:
            return
        for job in self.jobs:
            if not job.closed and time.monotonic() - job.started > self.lifetime:
                job.close()
                job.retired = True
                log.info("population job %d retired at half its time limit", job.number)

    def opens(self, slot: int) -> bool:
        """Whether a job of this slot may open a group: the slot's retiring trials (opens)."""
        return opens(sum(j.retiring() for j in self.jobs if j.slot == slot), self.size)

    def free_slot(self) -> int | None:
        """A slot that may start a job (slot_free), None: none."""
        for slot in range(self.slots):
            if slot_free(
                [(j.retired, len(j.trials)) for j in self.jobs if j.slot == slot], self.size
            ):
                return slot
        return None

    def target(self) -> dict[str, Any] | None | bool:
        """Where the next trial goes: the structure of a job's group with room (placement), None
        for a new group or job, NOWHERE."""
        if self.fix:
            for job in (j for j in self.jobs if j.room(self.size)):
                kind = placement(job.groups(), self.groups, self.group_size, self.opens(job.slot))
                if kind is None:
                    return None
                if kind is not NOWHERE:
                    return job.kinds[kind]
        if self.free_slot() is not None:
            return None
        if not self.fix and any(j.room(self.size) for j in self.jobs):
            return None
        return NOWHERE

    def release_idle(self) -> None:
        """Without fixing, a job with no trial left gives its slot to proposals that wait."""
        if self.waiting:
            for job in self.jobs:
                if not job.trials:
                    job.close()
