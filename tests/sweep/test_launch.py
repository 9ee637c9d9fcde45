"""The launch layer's requeue rule (rlhp.sweep._launch.requeued), shared by a search's jobs and
validation runs."""

import pytest

from rlhp.sweep._launch import requeued


def ends_without_a_result(times: int):
    """A run that raises the first `times` calls, then returns the number of calls."""
    calls = []

    def run() -> int:
        calls.append(1)
        if len(calls) <= times:
            raise RuntimeError(f"job {len(calls)} cancelled")
        return len(calls)

    return run


def test_with_requeue_a_run_without_a_result_runs_again_up_to_times():
    said: list[str] = []
    assert requeued(ends_without_a_result(2), True, 2, lambda e: said.append(str(e))) == 3
    assert said == ["job 1 cancelled", "job 2 cancelled"]


def test_past_times_or_without_requeue_the_error_is_raised():
    with pytest.raises(RuntimeError, match="job 3 cancelled"):
        requeued(ends_without_a_result(3), True, 2, lambda e: None)
    with pytest.raises(RuntimeError, match="job 1 cancelled"):
        requeued(ends_without_a_result(1), False, 2, pytest.fail)


def test_a_stop_is_never_retried():
    def stopped() -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        requeued(stopped, True, 5, pytest.fail)
