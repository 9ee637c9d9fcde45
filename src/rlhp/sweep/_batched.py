"""Batched search (`hydra.sweeper.population=P`): each slot is one process (a population job,
rlhp.batch) training up to P trials at once, refilled from the study as its trials end.

The controller asks the study for trials as the one-process-per-trial loop does (constraints,
budgets, priors, resume), writes each trial's folder (.hydra/config.yaml, overrides.yaml,
hydra.yaml) and assigns the trial through a job's inbox (rlhp.inbox). Trials whose structural
signature differs (rlhp.config.signature: hid_layers, time_horizon, ...) never share a job.
When the space has structural dimensions, a job's first trial draws them freely and the trials
asked to fill that job have them fixed to its values (Optuna's PartialFixedSampler), so every
job stays full: the sampler explores structure once per job, and everything else per trial.
A job is retired once it was given `population_trials` trials (by default P: its inbox closed,
it ends when they end) and its slot starts a new job, so structure is drawn again through the
search. The new job starts as soon as the retired one has at most half its population training
(ASHA stops members one by one): the two share the slot until the retired job ends.
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
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf, open_dict
from optuna.trial import Trial

from rlhp import record
from rlhp.config import is_member_key, signature
from rlhp.errors import TooManyFailures
from rlhp.inbox import Inbox
from rlhp.sweep import _results, _state

log = logging.getLogger("rlhp.sweep")


@dataclass
class Proposal:
    trial: Trial
    run_dir: Path
    overrides: list[str]
    kind: str  # the structural signature, as JSON


@dataclass
class Job:
    number: int
    slot: int
    kind: str
    fixed: dict[str, Any]  # the structural parameters its trials are asked with
    inbox: Inbox
    future: Future
    trials: dict[int, Proposal] = field(default_factory=dict)  # assigned, not recorded yet
    given: int = 0  # trials assigned so far
    closed: bool = False
    retired: bool = False  # closed after `population_trials` trials

    def room(self, size: int) -> bool:
        return not self.closed and len(self.trials) <= size

    def close(self) -> None:
        """No more trials: the job ends once those it has end."""
        if not self.closed:
            self.inbox.close()
            self.closed = True


def retire_after(
    population_trials: int | None, size: int, fix: bool, structural: bool
) -> int | None:
    """How many trials a job is given before it is retired (None: never): `population_trials`,
    by default one population's worth (`size`), when the space has structural dimensions and
    they are fixed per job (not with a grid)."""
    return (population_trials or size) if fix and structural else None


def slot_free(jobs: list[tuple[bool, int]], size: int) -> bool:
    """Whether a slot may start a job, given its jobs as (retired, trials in flight): when it has
    none, or one that is retired with at most half its population still training."""
    return not jobs or (len(jobs) == 1 and jobs[0][0] and 2 * jobs[0][1] <= size)


def job_error(job: Job, sweep_dir: Path) -> Exception | str:
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


def prepare(sweeper: Any, trial: Trial) -> Proposal:
    """The trial's folder with its composed config, and its structural signature."""
    overrides = sweeper._overrides(trial.params) + sweeper._seed(trial.number)
    cfg = sweeper.hydra_context.config_loader.load_sweep_config(sweeper.config, overrides)
    run_dir = sweeper.sweep_dir / str(trial.number)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save({"hydra": cfg.hydra}, run_dir / ".hydra" / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")
    with open_dict(cfg):
        del cfg["hydra"]
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml", resolve=True)
    kind = json.dumps(signature(cfg), sort_keys=True, default=str)
    return Proposal(trial, run_dir, overrides, kind)


class Batched:
    def __init__(self, sweeper: Any, study: optuna.Study):
        self.sw, self.study = sweeper, study
        self.size = sweeper.cfg.population
        self.jobs: list[Job] = []
        self.waiting: list[Proposal] = []  # no job of their kind has room yet
        self.pool = ThreadPoolExecutor(2 * sweeper.slots)  # a retired job drains beside one
        algo = sweeper.config.algo.name
        self.structural = [k for k in sweeper.space if not is_member_key(algo, k)]
        self.fix = getattr(sweeper, "grid", None) is None  # a grid's points stay whole
        self.retire = retire_after(
            sweeper.cfg.population_trials, self.size, self.fix, bool(self.structural)
        )
        folder = sweeper.sweep_dir / record.POPULATIONS
        taken = [int(p.name) for p in folder.glob("*") if p.name.isdigit()]
        self.numbers = itertools.count(max(taken, default=-1) + 1)  # never reuse an inbox

    def ask(self, job: Job | None) -> Trial | None:
        """The next trial, with `job`'s structural parameters fixed when it has some."""
        fixed = job.fixed if job is not None and self.fix else None
        return self.sw.ask(self.study, fixed)

    def place(self, proposal: Proposal) -> bool:
        """Assign to a running job of its kind with room, else start a job; False: no room."""
        for job in self.jobs:
            if job.kind == proposal.kind and job.room(self.size):
                self.assign(job, proposal)
                return True
        if (slot := self.free_slot()) is None:
            return False
        number = next(self.numbers)
        inbox = Inbox(record.population_dir(self.sw.sweep_dir, number))
        inbox.beat()
        job_overrides = proposal.overrides + [
            f"+population={self.size}",
            f"hydra.sweep.subdir={record.POPULATIONS}/{number}",
        ]
        future = self.pool.submit(self.sw.launch_job, record.JOB_BASE + number, job_overrides)
        fixed = {k: proposal.trial.params[k] for k in self.structural}
        job = Job(number, slot, proposal.kind, fixed, inbox, future)
        self.jobs.append(job)
        self.assign(job, proposal)
        log.info("population job %d started (%s)", number, fixed or "no structural dimension")
        return True

    def assign(self, job: Job, proposal: Proposal) -> None:
        job.trials[proposal.trial.number] = proposal
        job.inbox.put(proposal.trial.number, proposal.run_dir)
        job.given += 1
        if self.retire is not None and job.given >= self.retire:
            job.close()
            job.retired = True
            log.info("population job %d retired after %d trials", job.number, job.given)

    def free_slot(self) -> int | None:
        """A slot that may start a job (slot_free), None: none."""
        for slot in range(self.sw.slots):
            if slot_free(
                [(j.retired, len(j.trials)) for j in self.jobs if j.slot == slot], self.size
            ):
                return slot
        return None

    def target(self) -> Job | None | bool:
        """Where the next trial goes: a job with room, None for a new job, False: nowhere."""
        if job := next((j for j in self.jobs if j.room(self.size) and self.fix), None):
            return job
        if self.free_slot() is not None:
            return None
        if not self.fix and (job := next((j for j in self.jobs if j.room(self.size)), None)):
            return job
        return False

    def release_idle(self) -> None:
        """Without fixing, a job with no trial left gives its slot to proposals that wait."""
        if self.waiting:
            for job in self.jobs:
                if not job.trials:
                    job.close()

    def collect(self) -> tuple[int, int]:
        """Record the trials whose result appeared; those of jobs that ended without them run
        again (a job killed by a signal: max_retries) or fail with the job's error; returns how
        many were recorded and how many of them failed."""
        recorded = failed = 0
        for job in list(self.jobs):
            ended = job.future.done()
            error = job_error(job, self.sw.sweep_dir) if ended else None
            for number, proposal in list(job.trials.items()):
                if finished(proposal):
                    failed += not self.sw.record(self.study, proposal.trial, proposal.run_dir)
                elif error is None:
                    continue
                elif self.again(proposal, error):
                    del job.trials[number]
                    continue
                else:
                    failed += not self.sw.fail(self.study, proposal.trial, error)
                del job.trials[number]
                recorded += 1
            if ended:
                self.jobs.remove(job)
        return recorded, failed

    def again(self, proposal: Proposal, error: Exception | str) -> bool:
        """Whether a trial its job ended without runs again from its checkpoint (in another
        job): when the job was killed by a signal or ended without it (max_retries)."""
        cause = error if isinstance(error, str) else _results.one_line(error)
        if not _results.retry(proposal.trial, cause, self.sw.cfg.max_retries):
            return False
        self.waiting.append(proposal)
        return True

    def close(self) -> None:
        for job in self.jobs:
            job.close()


def run(sweeper: Any, study: optuna.Study) -> None:
    """The batched search loop; TooManyFailures as SweeperImpl._run."""
    sw, cfg = sweeper, sweeper.cfg
    todo = deque(sw.resumable(study))
    trials = study.get_trials(deepcopy=False)
    launched, failed = _state.launched_failed(trials)
    sw.elapsed0, sw.start = float(study.user_attrs.get("elapsed_s", 0.0)), time.time()
    if launched:
        log.info("resuming: %d trials launched before, %d to run again", launched, len(todo))
    batched, exhausted = Batched(sw, study), False

    def more() -> bool:
        return (
            not exhausted
            and launched < sw.n_trials
            and failed <= cfg.max_failure_rate * sw.n_trials
            and not sw.over_budget()
            and not sw.best_holds(study)
        )

    try:
        while True:
            if sw.refused:  # SLURM refused a job for good: stop here, where it is safe
                raise KeyboardInterrupt
            for job in batched.jobs:
                job.inbox.beat()
            recorded, newly_failed = batched.collect()
            failed += newly_failed
            started = launched
            batched.release_idle()
            pending = batched.waiting + [prepare(sw, t) for t in todo]
            todo.clear()
            batched.waiting = [p for p in pending if not batched.place(p)]
            while more() and len(batched.waiting) < batched.size:
                if (job := batched.target()) is False:
                    break
                if (trial := batched.ask(job)) is None:
                    exhausted = True
                    break
                launched += 1
                proposal = prepare(sw, trial)
                if not batched.place(proposal):
                    batched.waiting.append(proposal)
            if not more() and not batched.waiting:
                batched.close()  # jobs end once their trials are done
            redraw = time.time() - sw.reported >= _state.REDRAW_S  # frames advanced
            if recorded or launched > started or not batched.jobs or redraw:
                members = sum(len(j.trials) for j in batched.jobs) * sw.leaves["max_session"]
                sw.report(study, {"jobs": len(batched.jobs), "members": members})
            if not batched.jobs and not batched.waiting:
                break
            if recorded:  # a record per trial that ended, not per tick: the journal stays small
                study.set_user_attr("elapsed_s", sw.elapsed())
            time.sleep(0.5)
    except BaseException:  # Ctrl+C, a full disk: running trials stay RUNNING and resume
        sw.stop()
        raise
    finally:
        batched.pool.shutdown(wait=True, cancel_futures=True)
        if sw.packer is not None:
            sw.packer.close()
        sw.settle(study, [p.trial for job in batched.jobs for p in job.trials.values()])
    if failed > cfg.max_failure_rate * sw.n_trials:
        raise TooManyFailures(failed, cfg.max_failure_rate, sw.n_trials)
