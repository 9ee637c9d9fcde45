"""Where a search's trials come from and go to, whatever runs them: the checked search (`Search`:
the space, fixed overrides, constraints) and its study (`TrialSource`: ask under constraints,
resume, budgets and stop rules, record and fail). Both strategies (one process per trial,
_single; populations, _batched) draw from it through the one loop in _loop."""

import itertools
import logging
import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.trial import Trial, TrialState

from rlhp import record
from rlhp.analysis import best_history
from rlhp.errors import ConfigError, TooManyFailures
from rlhp.sweep import _constraint, _identity, _results, _space, _state

log = logging.getLogger("rlhp.sweep")
MAX_REJECTIONS = 100  # random samples all rejected before launch: the constraints are hopeless
PATIENCE = 20  # rejected samples in a row before a random feasible sample is drawn instead


@dataclass
class Search:
    """A search as the sweeper checked it: what is sampled, what every trial gets, what is
    forbidden, and the settings (hydra.sweeper.*) that rule the trials."""

    cfg: DictConfig  # hydra.sweeper.*
    space: dict[str, optuna.distributions.BaseDistribution]
    fixed: list[str]  # the command line's overrides that are not searched
    ordered: dict[str, list]  # ordered(...) dimensions: their values, by name
    constraints: list[str]
    leaves: dict[str, Any]  # the composed config's values, flat
    sweep_dir: Path
    grid: dict[str, list] | None = None  # grid and dgd: the points of the space
    seed_per_trial: bool = False

    def external(self, params: dict[str, Any]) -> dict[str, Any]:
        """Sampled params as trials get them: an ordered dimension's index as its value."""
        return {k: self.ordered[k][v] if k in self.ordered else v for k, v in params.items()}

    def overrides(self, params: dict[str, Any]) -> list[str]:
        return self.fixed + [f"{k}={v}" for k, v in self.external(params).items()]

    def values(self, params: dict[str, Any]) -> dict[str, Any]:
        """Values constraints are evaluated on: config leaves overridden by the sampled params."""
        external = self.external(params)
        return {**self.leaves, **{k: _space.decode(v) for k, v in external.items()}}

    def violated(self, params: dict[str, Any]) -> str | None:
        return _constraint.violated(self.constraints, self.values(params))

    def trial_overrides(self, trial: Trial) -> list[str]:
        """Trial N's overrides; with seed_per_trial its sessions start at seed + N *
        max_session (by default every trial uses the same seeds: common random numbers)."""
        seed = self.leaves["seed"] + trial.number * self.leaves["max_session"]
        return self.overrides(trial.params) + ([f"seed={seed}"] if self.seed_per_trial else [])


class TrialSource:
    """The study's trials for one run of the search: asked, resumed, recorded, counted; the
    stop rules (n_trials, max_failure_rate, budget_hours, stop_when_best_holds, an exhausted
    grid) in `more()`."""

    def __init__(self, search: Search, study: optuna.Study, parallel: int, queues: bool):
        self.search, self.study, self.cfg = search, study, search.cfg
        self.parallel, self.queues = parallel, queues  # SLURM: jobs may wait in its queue
        self.launched = self.failed = 0  # counted by resume()
        self.elapsed0 = float(study.user_attrs.get("elapsed_s", 0.0))
        self.start = time.time()
        self.exhausted = False  # a grid ran every point
        self.budget_ended = False
        self.fell_back = False  # a random sample was drawn after PATIENCE rejections
        self.reported = 0.0  # when state.yaml and the progress line were last written

    # -- the stop rules

    def more(self) -> bool:
        """Whether a new trial may start."""
        return (
            not self.exhausted
            and self.launched < self.cfg.n_trials
            and not self.too_many_failures()
            and not self.over_budget()
            and not self.best_holds()
        )

    def too_many_failures(self) -> bool:
        return self.failed > self.cfg.max_failure_rate * self.cfg.n_trials

    def check_failures(self) -> None:
        if self.too_many_failures():
            raise TooManyFailures(self.failed, self.cfg.max_failure_rate, self.cfg.n_trials)

    def elapsed(self) -> float:
        return self.elapsed0 + time.time() - self.start

    def over_budget(self) -> bool:
        hours = self.cfg.budget_hours
        if hours is None or self.elapsed() <= hours * 3600:
            return False
        if not self.budget_ended:
            self.budget_ended = True
            log.info("rlhp: budget_hours=%g ended the search: no new trial starts", hours)
        return True

    def best_holds(self) -> bool:
        """The best configuration (by the mean over its runs) held for stop_when_best_holds
        completed runs: no new trial starts."""
        if (n := self.cfg.stop_when_best_holds) is None:
            return False
        trials = self.study.get_trials(deepcopy=False)
        steps = best_history(trials, self.cfg.direction == "maximize")
        if held := bool(steps) and steps[-1].held >= n:
            log.info("the best configuration (trial %d's) held for %d runs", steps[-1].best, n)
        return held

    # -- trials in

    def resume(self) -> list[Trial]:
        """The trials that were running, to launch again; a trial whose sampling was cut short
        (some parameters missing) or that a constraint rejects was never launched: rejected; one
        whose folder was launched with other values fails."""
        out = []
        study, space = self.study, self.search.space
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            trial = Trial(study, frozen._trial_id)
            if set(frozen.params) != set(space):
                trial.set_user_attr("rejected", "incomplete sample")
                trial.set_user_attr("incomplete", True)
                _results.tell(study, trial, state=TrialState.FAIL)
                log.info("trial %d was never launched: its sampling was cut short", trial.number)
            elif expr := self.search.violated(frozen.params):
                _results.reject(study, trial, expr)
            elif cause := self.foreign(frozen.number, frozen.params):
                self.fail(trial, cause)
            else:
                out.append(trial)
        # counted as they are now: a trial rejected here was never launched
        self.launched, self.failed = _state.launched_failed(study.get_trials(deepcopy=False))
        if self.launched:
            log.info(
                "resuming: %d trials launched before, %d to run again", self.launched, len(out)
            )
        return out

    def foreign(self, number: int, params: dict[str, Any]) -> str | None:
        """Why trial `number`'s folder holds another configuration than `params`, or None."""
        searched = [f"{k}={v}" for k, v in self.search.external(params).items()]
        return _identity.foreign(record.trial_dir(self.search.sweep_dir, number), searched)

    def ask(self, fixed: dict[str, Any] | None = None) -> Trial | None:
        """The next trial that breaks no constraint, with `fixed` parameters as given, counted as
        launched; None when a grid is exhausted. A rejected sample is told to the sampler as
        infeasible (TPE learns to avoid it); after PATIENCE rejections in a row a random
        feasible sample is drawn instead, so a search never ends on rejections."""
        for rejected in itertools.count():
            if self.search.grid is not None and self.grid_exhausted():
                self.exhausted = True
                return None
            fallback = rejected >= PATIENCE and self.search.grid is None
            if fallback and rejected == PATIENCE * MAX_REJECTIONS:  # a fixed structure allows none
                raise ConfigError(
                    f"the constraints rejected {rejected} samples in a row with {fixed}"
                )
            trial = self._ask(fixed, fallback)
            if (expr := self.search.violated(trial.params)) is None:
                self.launched += 1
                return trial
            _results.reject(self.study, trial, expr)
            log.info("rejected trial %d %s: matches %r", trial.number, trial.params, expr)

    def _ask(self, fixed: dict[str, Any] | None, fallback: bool) -> Trial:
        """study.ask through the search's sampler, or a random one (`fallback`), with `fixed`
        parameters held (Optuna's PartialFixedSampler)."""
        study = self.study
        sampler = study.sampler
        if fallback:
            if not self.fell_back:
                log.warning(
                    "rlhp: warning: the sampler proposed %d rejected samples in a row; drawing"
                    " random feasible samples when it does (logged once)",
                    PATIENCE,
                )
                self.fell_back = True
            study.sampler = optuna.samplers.RandomSampler()
        if fixed:
            with warnings.catch_warnings():  # experimental since optuna 2.4, stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.sampler = optuna.samplers.PartialFixedSampler(fixed, study.sampler)
        try:
            trial = study.ask(self.search.space)
        finally:
            study.sampler = sampler
        if fallback:
            trial.set_user_attr("sampler", "random (fallback)")
        return trial

    def grid_exhausted(self) -> bool:
        """Every grid point ran or is running (GridSampler.is_exhausted hands out running ones)."""
        taken = {t.system_attrs.get("grid_id") for t in self.study.get_trials(deepcopy=False)}
        return taken >= set(range(math.prod(len(v) for v in self.search.grid.values())))

    # -- trials out

    def record(self, trial: Trial, run_dir: Path) -> None:
        """Record a trial from the result.yaml in its folder (a failure counts)."""
        sweep_dir, metric = self.search.sweep_dir, _results.metric(self.search.leaves["objective"])
        self.failed += not _results.record_result(self.study, trial, run_dir, sweep_dir, metric)

    def fail(self, trial: Trial, e: Exception | str) -> None:
        self.failed += not _results.fail(self.study, trial, e, self.search.sweep_dir)

    def retry(self, trial: Trial, e: Exception | str) -> bool:
        """Whether a trial whose job ended without it runs again from its checkpoint."""
        cause = e if isinstance(e, str) else _results.one_line(e)
        return _results.retry(trial, cause, self.cfg.max_retries)

    def settle(self, unrecorded: Iterable[Trial]) -> None:
        """Once the search stopped: record the trials whose result appeared meanwhile (the
        others stay RUNNING and resume), and write state.yaml as the study now is."""
        for trial in unrecorded:
            run_dir = record.trial_dir(self.search.sweep_dir, trial.number)
            if record.TrialResult.exists(run_dir):
                self.record(trial, run_dir)
        self.report()

    def report(self, populations: dict | None = None) -> None:
        """state.yaml and the progress line; `populations`: jobs and members of a batched
        search."""
        since = self.start if self.queues else None
        state = _state.summary(
            self.study, self.cfg.n_trials, self.elapsed(), self.parallel, self.search.sweep_dir,
            since,
        )  # fmt: skip
        self.reported = time.time()
        if populations is not None:
            state["populations"] = populations
        if self.budget_ended:
            state["ended_by"] = f"budget_hours={self.cfg.budget_hours:g}"
        _state.write(self.search.sweep_dir, state)
        _state.progress(state)

    def due(self) -> bool:
        """Whether the progress line is REDRAW_S old (the running trials' frames advanced)."""
        return time.time() - self.reported >= _state.REDRAW_S

    def save_elapsed(self) -> None:
        """The search's wall-clock into the study (once per recorded trial: the journal stays
        small), so that a resumed search's budget counts it."""
        self.study.set_user_attr("elapsed_s", self.elapsed())
