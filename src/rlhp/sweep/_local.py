"""Local trials (submitit_local): a slot frees the moment its trial ends, and knows why.

submitit's LocalJob is done once its process has exited, and a trial process takes seconds to
tear down torch after writing its result: the slot would stand idle that long. The result file is
written atomically (a temporary file, then a rename), so a job whose result file exists is done.

A trial process that dies without a result (the OOM killer, SIGKILL) would leave its slot idle
for submitit's 15 s wait for a result file, and fail with the last lines of its log. Here its
controller (`python -m rlhp.sweep._local`, submitit's own with one addition) exits with 128 + N
when its trial was killed by signal N, and the job fails at once with that cause.

submitit has no public hook for either, so this module is the one place that patches it:
`install` replaces LocalJob.done, LocalJob._get_outcome_and_result and
submitit.local.local.start_controller (a copy that starts rlhp's controller). The tests in
tests/sweep/test_local.py fail when an upgrade of submitit changes what is patched.

Trials reach submitit through Hydra's submitit_local launcher; runs the project starts itself
(validation runs) through `Jobs`, the local twin of rlhp.sweep._slurm.Jobs.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from submitit.core.utils import UncompletedJobError
from submitit.local import local
from submitit.local.local import Controller, LocalJob

_process_exited = LocalJob.done
_outcome = LocalJob._get_outcome_and_result
CONTROLLERS: list[subprocess.Popen] = []  # started by this process, for stop()


def _done(job: LocalJob, force_check: bool = False) -> bool:
    return job.paths.result_pickle.exists() or _process_exited(job, force_check)


def cause(code: int) -> str:
    """A controller's exit status in words."""
    signum = -code if code < 0 else code - 128 if code > 128 else 0
    if signum:
        return f"killed by signal {signum} ({signal.Signals(signum).name})"
    return f"exited with code {code}"


def _outcome_now(job: LocalJob) -> tuple[str, object]:
    """submitit's outcome, except that a process that ended without a result fails now."""
    code = job._process.poll() if job._process is not None else None
    if code is not None and not job.paths.result_pickle.exists():
        raise UncompletedJobError(f"trial process {cause(code)} without a result")
    return _outcome(job)


def _start_controller(
    folder: Path,
    command: str,
    tasks_per_node: int = 1,
    cuda_devices: str = "",
    timeout_min: float = 5.0,
    signal_delay_s: int = 30,
    stderr_to_stdout: bool = False,
    setup: tuple = (),  # never set by Hydra's submitit_local launcher
) -> subprocess.Popen:
    """submitit's start_controller, starting rlhp's controller."""
    env = dict(os.environ)
    env.update(
        SUBMITIT_LOCAL_NTASKS=str(tasks_per_node),
        SUBMITIT_LOCAL_COMMAND=command,
        SUBMITIT_LOCAL_TIMEOUT_S=str(int(60 * timeout_min)),
        SUBMITIT_LOCAL_SIGNAL_DELAY_S=str(int(signal_delay_s)),
        SUBMITIT_LOCAL_NODEID="0",
        SUBMITIT_LOCAL_JOB_NUM_NODES="1",
        SUBMITIT_STDERR_TO_STDOUT="1" if stderr_to_stdout else "",
        SUBMITIT_EXECUTOR="local",
        CUDA_VISIBLE_DEVICES=cuda_devices,
        SUBMITIT_LOCAL_WITH_SHELL="",
    )
    process = subprocess.Popen([sys.executable, "-m", __name__, str(folder)], env=env)
    CONTROLLERS.append(process)
    return process


def install() -> None:
    """Local jobs started by this process: done once their result file exists, failed at once
    (with the signal that killed them) when their process ends without one. Idempotent."""
    LocalJob.done = _done
    LocalJob._get_outcome_and_result = _outcome_now
    local.start_controller = _start_controller


class Jobs:
    """Local jobs (submitit's LocalExecutor, rlhp's controller) with the interface of
    rlhp.sweep._slurm.Jobs: call() runs fn(*args) as a job and returns its result; stop() makes
    every running one checkpoint and end (SIGTERM, as to a search's trials). At its time limit
    (timeout_min) a job gets SIGUSR2 and runs again from its checkpoint, as a trial does."""

    def __init__(self, folder: Path, timeout_min: float):
        from submitit import LocalExecutor

        install()
        self.executor = LocalExecutor(folder=str(folder))
        self.executor.update_parameters(timeout_min=timeout_min)
        self.ids: dict[str, str] = {}  # job name -> its job id
        self.running: dict[str, LocalJob] = {}
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def call(self, name: str, what: str, checkpointed, fn, *args):
        """fn(*args) run as the local job `name` (`what` in messages): its result.
        UncompletedJobError when it ended without one or stopped at a checkpoint on a signal
        from elsewhere (checkpointed(result)); KeyboardInterrupt after stop()."""
        with self.lock:
            if self.stopping.is_set():
                raise KeyboardInterrupt
            job = self.running[name] = self.executor.submit(fn, *args)
            self.ids[name] = job.job_id
        try:
            while not job.done():
                time.sleep(0.2)
            result = job.result()
        except UncompletedJobError:
            if self.stopping.is_set():  # Ctrl+C reached it too
                raise KeyboardInterrupt from None
            raise
        finally:
            with self.lock:
                del self.running[name]
        if self.stopping.is_set():
            raise KeyboardInterrupt
        if checkpointed(result):
            raise UncompletedJobError(f"{what} (job {job.job_id}) stopped at a checkpoint")
        return result

    def stop(self) -> None:
        """Every running job checkpoints and ends; returns once they have."""
        with self.lock:
            self.stopping.set()
            jobs = list(self.running.values())
        for job in jobs:  # SIGTERM to its controller, which passes it on (cancel() sends SIGINT)
            job._process.send_signal(signal.SIGTERM)
        for job in jobs:
            job._process.wait()


class Terminated(KeyboardInterrupt):
    """SIGTERM to the search's controller (`kill`, `timeout`, a scheduler ending its job): it
    stops as on Ctrl+C, every running job stopped at a checkpoint, and the same command resumes."""


def _terminate(signum: int, _frame: object) -> None:
    signal.signal(signal.SIGTERM, _ignore)  # a second SIGTERM cannot cut the stop short
    raise Terminated()


def _ignore(signum: int, _frame: object) -> None:
    """Not SIG_IGN, which the processes started while stopping would inherit."""


def stop_on_sigterm() -> None:
    """SIGTERM raises Terminated in the main thread (where Hydra runs the sweeper)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


def stop() -> None:
    """SIGTERM to every running trial: it checkpoints and ends (the same command resumes it)."""
    for process in CONTROLLERS:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)


class _Controller(Controller):
    """submitit's controller; remembers the signal that killed a task."""

    killed = 0

    def wait(self, freq: int = 24):
        codes = super().wait(freq)
        self.killed = next((-c for c in codes if c is not None and c < 0), 0)
        return codes


if __name__ == "__main__":
    controller = _Controller(Path(sys.argv[1]))
    try:
        controller.run()
    except KeyboardInterrupt:  # Ctrl+C reaches the whole process group: the sweeper reports it
        sys.exit(128 + signal.SIGINT)
    sys.exit(128 + controller.killed if controller.killed else 0)
