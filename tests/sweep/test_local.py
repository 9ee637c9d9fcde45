"""Real submitit local jobs: done once their result is written, failed at once with the signal
that killed them."""

import atexit
import os
import signal
import threading
import time

import pytest
import submitit

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


@pytest.mark.parametrize(
    ("code", "words"),
    [(137, "killed by signal 9 (SIGKILL)"), (-15, "killed by signal 15 (SIGTERM)"), (1, "code 1")],
)
def test_cause_of_an_exit_status(code, words):
    assert words in _local.cause(code)
