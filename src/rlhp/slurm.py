"""submitit SLURM executors from the Hydra submitit launcher's settings (`hydra.launcher.*`),
built as Hydra's launcher builds them, and the settings a trial ran with; submissions retried
while SLURM refuses them, and a job's recorded end state; shared by the sweeper's jobs and
validation."""

import contextlib
import io
import logging
import math
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rlhp.errors import ConfigError
from rlhp.record import config_path, hydra_path

log = logging.getLogger("rlhp.sweep")
BACKOFF_S = (5.0, 300.0)  # first wait after a refused submission, and the longest
PATIENCE_S = 3600.0  # a job refused this long (transient reasons) stops the search
# sbatch errors that pass: submit limits (QOSMaxSubmitJobPerUserLimit, AssocMaxSubmitJobLimit,
# ...), a busy or unreachable slurmctld
_TRANSIENT = re.compile(
    r"MaxSubmit|limit|timed out|temporarily|unable to contact|connection|try again|busy|socket",
    re.IGNORECASE,
)
_SUBMIT_LOCK = threading.Lock()

# launcher keys submitit's AutoExecutor takes under their own name; the rest get `slurm_`
_SHARED = {"timeout_min", "name", "nodes", "mem_gb", "cpus_per_task", "gpus_per_node"}
_SHARED |= {"tasks_per_node", "stderr_to_stdout"}
_INIT = ("max_num_timeout", "python")  # set when the executor is made, not per job
_NOT_SUBMITIT = ("_target_", "submitit_folder")  # Hydra's own


def submitit_names(params: dict[str, Any]) -> dict[str, Any]:
    """Hydra submitit launcher keys -> submitit AutoExecutor keys (None values dropped)."""
    return {k if k in _SHARED else f"slurm_{k}": v for k, v in params.items() if v is not None}


def executor(params: dict[str, Any], folder: Path):
    """A submitit SLURM executor writing into `folder` with the launcher settings `params`."""
    import submitit

    params = {k: v for k, v in params.items() if k not in _NOT_SUBMITIT}
    init = {f"slurm_{k}": params.pop(k) for k in _INIT if k in params}
    ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm", **init)
    ex.update_parameters(**submitit_names(params))
    return ex


def trial_params(run_dir: Path) -> dict[str, Any] | None:
    """The SLURM launcher settings a trial ran with (its .hydra/hydra.yaml, resolved against its
    config), with whole GPUs for meta.search_resources.gpu (gpu_request); None if it did not run
    on SLURM."""
    if not (hydra_path(run_dir).is_file() and config_path(run_dir).is_file()):
        return None
    hydra_cfg = OmegaConf.load(hydra_path(run_dir)).hydra
    launcher = OmegaConf.to_container(hydra_cfg.get("launcher") or {})
    if not str(launcher.get("_target_", "")).endswith(".SlurmLauncher"):
        return None
    skip = ("_target_", "submitit_folder")  # the runs get a folder of their own
    hydra_cfg.launcher = {k: v for k, v in launcher.items() if k not in skip}
    cfg = OmegaConf.merge(OmegaConf.load(config_path(run_dir)), {"hydra": hydra_cfg})
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    if (gpu := OmegaConf.select(cfg, "meta.search_resources.gpu", default=0) or 0) > 0:
        params.update(gpu_request(params.get("gres"), math.ceil(gpu)))
    return params


def trial_requeue(run_dir: Path) -> bool:
    """hydra.sweeper.requeue of the search a trial ran in (its .hydra/hydra.yaml): whether a job
    that ended without a result (cancelled, killed, node failure) is submitted again."""
    path = hydra_path(run_dir)
    return path.is_file() and bool(OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.requeue"))


def gpu_request(gres: str | None, gpus: int) -> dict[str, Any]:
    """The launcher settings that ask for `gpus` GPUs per job: `gpus_per_node`, or, when
    hydra.launcher.gres names a GPU type (`gpu:a100`, `gpu:a100:N`), that gres with the job's
    count instead, never both. ConfigError when gres asks for a different count."""
    items = [g for g in (gres or "").split(",") if g.split(":")[0] == "gpu"]
    if not items:
        return {"gpus_per_node": gpus or None}
    fields = items[0].split(":")
    if fields[-1].isdigit() and int(fields[-1]) != gpus:
        raise ConfigError(
            f"hydra.launcher.gres={gres} asks for {fields[-1]} GPUs per job, a job here needs "
            f"{gpus} (meta.search_resources.gpu): give the type only, e.g. gres=gpu:a100"
        )
    if gpus == 0:
        raise ConfigError(
            f"hydra.launcher.gres={gres} asks for GPUs but meta.search_resources.gpu is 0"
        )
    typed = ":".join(f for f in fields if not f.isdigit())
    rest = [g for g in (gres or "").split(",") if g not in items]
    return {"gres": ",".join([f"{typed}:{gpus}", *rest]), "gpus_per_node": None}


class NotSubmitted(KeyboardInterrupt):
    """SLURM refused a job for good (or for longer than PATIENCE_S): the search stops as on
    Ctrl+C, and the job's trial, never started, stays to run when the same command resumes."""


def refusal(error: Exception) -> str:
    """sbatch's own words in a submission error, in one line."""
    lines = [line.strip().removeprefix("sbatch: error: ") for line in str(error).splitlines()]
    return "; ".join(line for line in lines if line) or type(error).__name__


def transient(reason: str) -> bool:
    """Whether SLURM may accept later what it refused for `reason` (a submit limit, a busy or
    unreachable controller); an invalid account, partition or request will not pass."""
    return bool(_TRANSIENT.search(reason))


class Backoff:
    """The submission of one job while SLURM refuses it: when to try again (5 s, doubling, at
    most every 5 min), logged once; NotSubmitted for a lasting refusal."""

    def __init__(self, what: str):
        self.what, self.refusals, self.delay = what, 0, BACKOFF_S[0]
        self.since = self.next = 0.0

    def ready(self) -> bool:
        return time.monotonic() >= self.next

    def refused(self, error: Exception) -> None:
        reason, now = refusal(error), time.monotonic()
        if not self.refusals:
            self.since = now
        self.refusals += 1
        if not transient(reason) or now - self.since > PATIENCE_S:
            log.error(
                "rlhp: error: SLURM refused %s: %s; the search stops; run the same command to "
                "resume",
                self.what,
                reason,
            )
            raise NotSubmitted(reason) from error
        if self.refusals == 1:
            log.warning(
                "rlhp: warning: SLURM refused %s (%s): trying again, at most every %d s",
                self.what,
                reason,
                BACKOFF_S[1],
            )
        self.next, self.delay = now + self.delay, min(2 * self.delay, BACKOFF_S[1])

    def submitted(self, job_id: str) -> None:
        if self.refusals:
            log.info("%s submitted as job %s after %d refusals", self.what, job_id, self.refusals)
        self.refusals, self.delay = 0, BACKOFF_S[0]


def submit(ex, fn, *args):
    """ex.submit(fn, *args); submitit prints sbatch's error to stderr itself, which Backoff logs
    once instead: that line is kept out of stderr (other threads' output goes through)."""
    from submitit.core.utils import FailedJobError

    with _SUBMIT_LOCK:
        out, buffer, error = sys.stderr, io.StringIO(), None
        try:
            with contextlib.redirect_stderr(buffer):
                return ex.submit(fn, *args)
        except FailedJobError as e:
            error = str(e).strip()
            raise
        finally:
            text = buffer.getvalue()
            out.write(text.replace(f"{error}\n", "", 1) if error else text)


_ACTIVE = ("PENDING", "RUNNING", "COMPLETING", "REQUEUED", "SUSPENDED")


def end_state(job_id: str, wait_s: float = 60) -> tuple[str, bool]:
    """The state SLURM recorded (sacct) for the job's run that ended last (its own record's, or,
    when SLURM requeued the job and a new record is PENDING or RUNNING, the earlier one's) and
    whether a step of that run was killed by SIGTERM (its derived exit code); sacct lags the
    queue by seconds: ('', False) when it does not say within wait_s."""
    deadline = time.monotonic() + wait_s
    cmd = ["sacct", "-D", "-X", "-n", "-P", "-j", job_id, "-o", "State,DerivedExitCode"]
    while True:
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        runs = [line.split("|") for line in out.splitlines() if line.strip()]
        ended = [i for i, (state, _) in enumerate(runs) if state.split()[0] not in _ACTIVE]
        if ended and (ended[-1] == len(runs) - 1 or len(runs) > 1):
            state, code = runs[ended[-1]]
            return state.split()[0], code.endswith(f":{signal.SIGTERM.value}")
        if time.monotonic() > deadline:
            return "", False
        time.sleep(1)


def preempted(sigterm: bool, state: str) -> bool:
    """Whether a job that ended without its result was preempted (to run again from its
    checkpoint) rather than cancelled or failed, by its recorded end `state`: PREEMPTED; when its
    trial ended on SIGTERM (it checkpointed, or was killed before it could), anything but
    CANCELLED (a preempted job that ends within its partition's GraceTime is COMPLETED or
    FAILED; one SLURM requeued is PENDING again)."""
    if state.startswith("PREEMPTED"):
        return True
    return sigterm and bool(state) and not state.startswith("CANCELLED")


STOP_GRACE_S = 60  # jobs still running this long after the stop signal are cancelled outright


def _queued(job_ids: set[str]) -> dict[str, str]:
    """Job id -> squeue's state (PD, R, CG, ...) of those of job_ids still in the queue."""
    out = subprocess.run(["squeue", "-h", "--me", "-o", "%i|%t"], capture_output=True, text=True)
    rows = (line.split("|") for line in out.stdout.split())
    return {job_id: state for job_id, state in rows if job_id in job_ids}


def scancel(*args: str) -> None:
    subprocess.run(["scancel", *args], capture_output=True)


def stop_jobs(job_ids: set[str], grace_s: float = STOP_GRACE_S) -> None:
    """Make these jobs' runs (trials, hosts' trials, validation runs) checkpoint and end, none
    requeued: SIGTERM to the steps of each running job (submitit ignores it, so nothing is
    requeued; SIGUSR2 would be), pending ones cancelled. Returns once none is left
    running; one still running after grace_s (its trial was not yet listening for the signal) is
    cancelled (SIGTERM, then SIGKILL)."""
    queued = _queued(job_ids)
    if pending := [i for i, state in queued.items() if state == "PD"]:
        scancel(*pending)
    if running := [i for i, state in queued.items() if state != "PD"]:
        scancel("--signal=TERM", *running)
    deadline = time.monotonic() + grace_s
    while left := [i for i, state in _queued(job_ids).items() if state != "CG"]:
        if time.monotonic() > deadline:
            scancel(*left)
            return
        time.sleep(1)
