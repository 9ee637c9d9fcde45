"""What a trial does around training: its sessions (in lockstep, as one population), its
result.yaml and HParams summary, and how it stops on a signal. Used by the
entry point (rlhp.train) and by population jobs (rlhp.batch)."""

import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from rlhp.config import flatten
from rlhp.log import log_hparams
from rlhp.member import Lockstep, Member, Reporter
from rlhp.population import Population
from rlhp.record import TrialResult

log = logging.getLogger("rlhp")


def device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lockstep(members: list[Member], report: Reporter | None) -> None:
    """A trial's sessions (members) report the mean over their seeds and stop together."""
    if report is not None:
        group = Lockstep(report, len(members))
        for member in members:
            member.reporter, member.lockstep = group.reporter(), group


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def local_controller() -> int | None:
    """The pid of the submitit local controller this process is a task of, else None."""
    job_id = os.environ.get("SUBMITIT_LOCAL_JOB_ID", "")
    if os.environ.get("SUBMITIT_EXECUTOR") != "local" or not job_id.isdigit():
        return None
    # the job id is the controller's pid, or its shell's when it was started through one
    return os.getppid() if os.environ.get("SUBMITIT_LOCAL_WITH_SHELL") else int(job_id)


def end_with_parent(signum: int) -> None:
    """`signum` to this process the moment its parent dies (Linux prctl PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)


class StopOnSignal:
    """SIGTERM / SIGUSR2 (SLURM preemption, time limit) make the running session checkpoint at
    its next boundary and raise Preempted; the handler that was there before (submitit's, which
    requeues the job) then runs, so the trial resumes from that checkpoint.

    A local trial whose controller dies (kill -9) gets SIGTERM, checkpoints and exits without a
    result: no orphan trains on while the sweeper runs the trial again from that checkpoint."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR2)

    def __init__(self):
        self.previous = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        self.session: Population | None = None
        self.received: int | None = None
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)
        self.controller = local_controller()
        if self.controller is not None:
            end_with_parent(signal.SIGTERM)
            if self.orphaned():  # it died before prctl
                self._handle(signal.SIGTERM, None)

    def orphaned(self) -> bool:
        """A local task whose controller is gone: nobody would read its result."""
        return self.controller is not None and os.getppid() != self.controller

    def _handle(self, signum: int, _frame) -> None:
        self.received = signum
        if self.session is not None:
            self.session.stop_requested = True

    def hand_over(self) -> None:
        """After the checkpoint: let the previous handler (e.g. submitit's requeue) act; an
        orphan exits at once, with no result."""
        if self.orphaned():
            sys.exit(128 + (self.received or signal.SIGTERM))
        handler = self.previous[self.received]
        if callable(handler):
            handler(self.received, None)


def train_trial(
    cfg: DictConfig, run_dir: Path, dev: torch.device, stop, report: Reporter | None
) -> list[dict]:
    """The max_session sessions (seeds seed, seed + 1, ...) as one population, in lockstep: ASHA
    judges the mean over the sessions at each log point and stops them together."""
    members = [Member(cfg, run_dir, s) for s in range(cfg.max_session)]
    lockstep(members, report)
    stop.session = population = Population(members, dev)
    population.stop_requested = stop.received is not None
    population.run()
    for member in members:
        if member.error is not None:
            raise FloatingPointError(f"session {member.session}: {member.error}")
        log.info("session %d: %s", member.session, member.summary())
    return [m.summary() for m in members]


def write_result(cfg: DictConfig, run_dir: Path, summaries: list[dict]) -> TrialResult:
    """result.yaml (what the sweeper records) and the HParams summary of a finished trial."""
    result = TrialResult.of_sessions(summaries, cfg.objective)
    result.write(run_dir)
    hparams = {"env": cfg.env.name, **flatten(OmegaConf.to_container(cfg, resolve=True))}
    log_hparams(run_dir, hparams, summaries, cfg.objective)
    log.info(
        "rlhp: objective %s = %.4f (std %.4f) in %s",
        cfg.objective,
        result.objective,
        result.objective_std,
        run_dir,
    )
    return result
