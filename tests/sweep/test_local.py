"""A real submitit local job is done once its result is written, not once its process exits."""

import atexit
import time

import submitit

from rlhp.sweep import _local

EXIT_DELAY = 6.0  # seconds the job's process spends exiting after writing its result


def test_result_arrives_while_the_process_is_still_exiting(tmp_path):
    def slow_exit() -> int:  # defined here: cloudpickle sends it by value
        atexit.register(time.sleep, EXIT_DELAY)
        return 42

    _local.done_on_result()
    executor = submitit.LocalExecutor(folder=tmp_path)
    executor.update_parameters(timeout_min=2)
    start = time.monotonic()
    job = executor.submit(slow_exit)
    assert job.result() == 42
    waited = time.monotonic() - start
    assert job._process.poll() is None  # still tearing down
    assert waited < EXIT_DELAY
    job._process.wait(timeout=30)
