"""Real submitit local jobs: done once their result is written, failed at once with the signal
that killed them; and what `_local` patches in submitit, so that an upgrade that changes it fails
here, not in a user's sweep."""

import ast
import atexit
import inspect
import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest
import submitit
from submitit.core.utils import UncompletedJobError
from submitit.local import local

from rlhp.sweep import _local

EXIT_DELAY = 6.0  # seconds the job's process spends exiting after writing its result


@pytest.fixture
def executor(tmp_path):
    _local.install()
    executor = submitit.LocalExecutor(folder=tmp_path)
    executor.update_parameters(timeout_min=2)
    return executor


def test_result_arrives_while_the_process_is_still_exiting(executor):
    def slow_exit() -> int:  # defined here: cloudpickle sends it by value
        atexit.register(time.sleep, EXIT_DELAY)
        return 42

    job = executor.submit(slow_exit)
    assert job.result() == 42
    assert job._process.poll() is None  # still tearing down
    assert job.done()
    job._process.wait(timeout=30)


def test_a_killed_job_fails_at_once_naming_the_signal(executor):
    def killed() -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        return 0

    job = executor.submit(killed)
    job._results_timeout_s = 10**6  # submitit's wait for a result file that will never come
    errors: list[Exception] = []

    def result() -> None:
        try:
            job.result()
        except Exception as e:
            errors.append(e)

    waiter = threading.Thread(target=result, daemon=True)
    waiter.start()
    waiter.join(timeout=60)
    assert not waiter.is_alive(), "the job waited for a result file after its process died"
    (error,) = errors
    assert "killed by signal 9 (SIGKILL)" in str(error)


def test_stop_sends_sigterm_to_running_jobs(executor):
    def sleeper() -> int:
        time.sleep(120)
        return 0

    job = executor.submit(sleeper)
    _local.stop()
    assert job._process.wait(timeout=60) is not None


# -- Jobs: runs this process starts itself (validation runs), the local twin of _slurm.Jobs


def test_jobs_call_returns_the_result_and_names_the_job(tmp_path):
    jobs = _local.Jobs(tmp_path, timeout_min=2)
    assert jobs.call("rlhp_validate3", "run 3", _never, os.getpid) not in (None, os.getpid())
    assert (tmp_path / f"{jobs.ids['rlhp_validate3']}_0_result.pkl").is_file()


def _never(result) -> bool:
    return False


def _stopped(result) -> bool:
    return result == "stopped"


def test_jobs_stop_makes_a_running_job_checkpoint_and_end(tmp_path):
    jobs = _local.Jobs(tmp_path, timeout_min=2)
    errors: list[BaseException] = []

    def _until_sigterm() -> str:  # a run that checkpoints on SIGTERM and says so
        received: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
        deadline = time.monotonic() + 120
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        return "stopped" if received else "timed out"

    def call() -> None:
        try:
            jobs.call("run", "run", _stopped, _until_sigterm)
        except BaseException as e:
            errors.append(e)

    caller = threading.Thread(target=call)
    caller.start()
    while "run" not in jobs.ids or not list(tmp_path.glob("*_log.out")):
        time.sleep(0.05)
    time.sleep(1.5)  # the job's function is listening
    jobs.stop()
    caller.join(timeout=60)
    (error,) = errors
    assert isinstance(error, KeyboardInterrupt)
    result = submitit.LocalJob(tmp_path, jobs.ids["run"]).result()
    assert result == "stopped"  # it got SIGTERM and returned, not killed
    with pytest.raises(KeyboardInterrupt):  # nothing starts after a stop
        jobs.call("another", "another", _never, os.getpid)


def test_jobs_a_job_stopped_from_elsewhere_or_killed_ended_without_a_result(tmp_path):
    jobs = _local.Jobs(tmp_path, timeout_min=2)
    with pytest.raises(UncompletedJobError, match="run 1 .* stopped at a checkpoint"):
        jobs.call("one", "run 1", _stopped, lambda: "stopped")

    def killed() -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        return 0

    with pytest.raises(UncompletedJobError, match=r"killed by signal 9 \(SIGKILL\)"):
        jobs.call("two", "run 2", _never, killed)


@pytest.mark.parametrize(
    ("code", "words"),
    [(137, "killed by signal 9 (SIGKILL)"), (-15, "killed by signal 15 (SIGTERM)"), (1, "code 1")],
)
def test_cause_of_an_exit_status(code, words):
    assert words in _local.cause(code)


# -- what install() patches (rlhp.sweep._local is its one home)


def _parameters(func) -> list[str]:
    return list(inspect.signature(func).parameters)


def _env_names(func: ast.FunctionDef) -> set[str]:
    """The environment variables a start_controller sets (its `env.update(NAME=...)`)."""
    calls = [n for n in ast.walk(func) if isinstance(n, ast.Call)]
    update = next(c for c in calls if getattr(c.func, "attr", None) == "update")
    return {k.arg for k in update.keywords}


def test_the_replaced_job_methods_keep_their_parameters():
    # _local holds submitit's originals, whether or not install() ran in this process
    assert _parameters(_local._process_exited) == ["self", "force_check"]
    assert _parameters(_local._outcome) == ["self"]
    assert _parameters(_local._done)[1:] == _parameters(_local._process_exited)[1:]


def test_start_controller_is_a_faithful_copy_of_submitits():
    source = Path(local.__file__).read_text()
    theirs = next(
        n
        for n in ast.parse(source).body
        if isinstance(n, ast.FunctionDef) and n.name == "start_controller"
    )
    ours = ast.parse(textwrap.dedent(inspect.getsource(_local._start_controller))).body[0]
    assert [a.arg for a in theirs.args.args] == [a.arg for a in ours.args.args]
    assert _env_names(theirs) == _env_names(ours)
    assert "submitit.local._local" in source  # the controller module ours stands in for


def test_the_controller_keeps_what_rlhps_controller_extends():
    assert _parameters(local.Controller.__init__) == ["self", "folder"]
    assert _parameters(local.Controller.wait) == ["self", "freq"]
    assert _parameters(local.Controller.run)[0] == "self"


def test_install_twice_patches_once(executor):
    _local.install()
    assert local.LocalJob.done is _local._done
    assert local.LocalJob._get_outcome_and_result is _local._outcome_now
    assert local.start_controller is _local._start_controller
    assert _local._process_exited is not _local._done
