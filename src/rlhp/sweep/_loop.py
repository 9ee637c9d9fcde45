"""The one search loop: trials from a TrialSource, run by a strategy (one process per trial,
_single; populations, _batched), until the source's stop rules end the search and the running
trials ended. Ctrl+C, SIGTERM or a full disk stop every running job at a checkpoint; the trials
that were running stay RUNNING in the study, and the same command resumes them."""

from collections.abc import Iterable
from typing import Any, Literal, Protocol

from optuna.trial import Trial

from rlhp.sweep._launch import Launch
from rlhp.sweep._source import TrialSource

NOWHERE: Literal[False] = False


class Strategy(Protocol):
    """How trials run. `room()`: where the next trial goes, as the parameters it must be asked
    with (None: any), or NOWHERE (no room now); `collect()` records the trials that ended (through
    the source) and returns how many; `wait()` blocks until something may have changed."""

    def resume(self, trials: list[Trial]) -> None: ...
    def room(self) -> dict[str, Any] | None | Literal[False]: ...
    def start(self, trial: Trial) -> None: ...
    def collect(self) -> int: ...
    def closing(self) -> None: ...  # no new trial will come
    def busy(self) -> bool: ...  # trials are running or waiting to
    def status(self) -> dict | None: ...  # for state.yaml (populations: jobs and members)
    def wait(self) -> None: ...
    def shutdown(self) -> Iterable[Trial]: ...  # the trials that were running


def run(source: TrialSource, strategy: Strategy, launch: Launch) -> None:
    """Run the search to its end; TooManyFailures when more than max_failure_rate of the trials
    failed."""
    strategy.resume(source.resume())
    unrecorded: Iterable[Trial] = ()
    try:
        while True:
            if launch.refused:  # SLURM refused a job for good: stop here, where it is safe
                raise KeyboardInterrupt
            recorded = strategy.collect()
            started = source.launched
            while source.more() and (fixed := strategy.room()) is not NOWHERE:
                if (trial := source.ask(fixed)) is None:
                    break
                strategy.start(trial)
            if not source.more():
                strategy.closing()
            if recorded or source.launched > started or not strategy.busy() or source.due():
                source.report(strategy.status())
            if recorded:
                source.save_elapsed()
            if not strategy.busy():
                break
            strategy.wait()
    except BaseException:  # Ctrl+C, a full disk: running trials stay RUNNING and resume
        launch.stop()
        raise
    finally:
        unrecorded = strategy.shutdown()
        launch.close()
        source.settle(unrecorded)
    source.check_failures()
