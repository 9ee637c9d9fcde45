"""One process per trial (`hydra.sweeper.population=1`): each trial is one job of the launcher,
run from a pool of `slots` threads, so there is no batch barrier: a slot refills the moment its
trial ends. A trial whose process dies is run again from its checkpoint (max_retries)."""

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from optuna.trial import Trial

from rlhp import record
from rlhp.sweep import _results, _state
from rlhp.sweep._launch import Launch
from rlhp.sweep._loop import NOWHERE
from rlhp.sweep._source import TrialSource


class Single:
    def __init__(self, source: TrialSource, launch: Launch, slots: int):
        self.source, self.launch, self.slots = source, launch, slots
        self.sweep_dir = source.search.sweep_dir
        self.running: dict[Future, Trial] = {}
        self.pool = ThreadPoolExecutor(slots)

    def resume(self, trials: list[Trial]) -> None:
        for trial in trials:
            self.start(trial)

    def room(self):
        return None if len(self.running) < self.slots else NOWHERE

    def start(self, trial: Trial) -> None:
        self.running[self.pool.submit(self._run, trial)] = trial

    def _run(self, trial: Trial):
        """The trial's job, run again from its checkpoint when its process dies (max_retries)."""
        overrides = self.source.search.trial_overrides(trial)
        return _results.retried(
            lambda: self.launch.run(trial.number, overrides),
            trial,
            record.trial_dir(self.sweep_dir, trial.number),
            self.source.cfg.max_retries,
            lambda: self.launch.stopping,
        )

    def collect(self) -> int:
        done = [future for future in self.running if future.done()]
        for future in done:
            self._ended(self.running.pop(future), future)
        return len(done)

    def _ended(self, trial: Trial, future: Future) -> None:
        """Record a trial whose job ended: by its result, else as failed."""
        try:
            ret = future.result()
            ret.return_value  # noqa: B018  raises the trial's own exception
            run_dir = Path(ret.hydra_cfg.hydra.runtime.output_dir)
        except Exception as e:
            run_dir = record.trial_dir(self.sweep_dir, trial.number)
            if not record.TrialResult.exists(run_dir):  # else it ended by its result
                return self.source.fail(trial, e)
        self.source.record(trial, run_dir)

    def closing(self) -> None:
        pass  # a trial ends by itself

    def busy(self) -> bool:
        return bool(self.running)

    def status(self) -> None:
        return None

    def wait(self) -> None:
        """Until a trial ends, or REDRAW_S (the progress line follows the running trials)."""
        wait(self.running, timeout=_state.REDRAW_S, return_when=FIRST_COMPLETED)

    def shutdown(self) -> list[Trial]:
        self.pool.shutdown(wait=True, cancel_futures=True)
        return list(self.running.values())
