"""The rlhp sweeper: Optuna samples, constraints filter, trial slots refill as soon as one frees.

Each trial is launched alone through the configured Hydra launcher (submitit_local by default:
one process per trial; submitit_slurm on a cluster) from a pool of `max_concurrent` threads,
so there is no batch barrier. The study lives in an Optuna JournalStorage file in the sweep
dir; re-running the same command resumes it: finished trials are kept and trials that were
running are launched again under the same number, so they resume from their checkpoints.

Over 400 lines: one class, SweeperImpl, in the order a search runs (set-up checks, the study,
the loop, launching, recording); as Hydra's sweeper plugins keep their `_impl`. Opening the
study lives in _study (the dir's one study, _identity), recording in _results, checks in
_checks, the batched loop in _batched.
"""

import itertools
import logging
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock, Timeout
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import Trial, TrialState

from rlhp import record
from rlhp.analysis import best_history
from rlhp.config import check
from rlhp.errors import ConfigError, RlhpError, TooManyFailures
from rlhp.sweep import (
    _centred,
    _checks,
    _constraint,
    _identity,
    _local,
    _results,
    _space,
    _state,
    _study,
)

log = logging.getLogger("rlhp.sweep")
MAX_REJECTIONS = 100  # random samples all rejected before launch: the constraints are hopeless
PATIENCE = 20  # rejected samples in a row before a random feasible sample is drawn instead


class SweeperImpl:
    def __init__(self, sampler: Any, **cfg: Any) -> None:
        self.sampler_cfg = sampler
        self.cfg = OmegaConf.create(cfg)
        self.fell_back = False  # a random sample was drawn after PATIENCE rejections
        self.reported = 0.0  # when state.yaml and the progress line were last written
        self.budget_ended = False  # budget_hours ended the search: no new trial starts
        for note in _checks.renamed(self.cfg):
            print(f"rlhp: warning: {note}", file=sys.stderr)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def sweep(self, arguments: list[str]) -> None:
        self.stopping = False
        self.refused = False  # SLURM refused a job for good: the search stops
        _local.stop_on_sigterm()  # stop as on Ctrl+C
        try:
            self._sweep(arguments)
        except RlhpError as e:
            print(f"rlhp: error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as e:
            if self.refused:  # SLURM refused a job for good: its one error line was logged
                sys.exit(2)
            how = "stopped by SIGTERM" if isinstance(e, _local.Terminated) else "interrupted"
            print(f"\nrlhp: {how}; run the same command to resume", file=sys.stderr)
            sys.exit(128 + (signal.SIGTERM if isinstance(e, _local.Terminated) else signal.SIGINT))
        except OSError as e:
            if (number := record.disk_errno(e)) is None:
                raise
            print(
                f"rlhp: error: cannot write to {self.sweep_dir}: {os.strerror(number)}"
                f"{f' ({e.filename})' if e.filename else ''}; fix it and run the same command"
                " to resume",
                file=sys.stderr,
            )
            sys.exit(1)

    # -- set-up: everything that can be wrong is found here, before anything is launched

    def _prepare(self, arguments: list[str]) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _checks.settings(self.cfg)
        self.n_trials = self.cfg.n_trials
        self.cfg.population, capped = _checks.population_size(self.cfg.population, self.n_trials)
        self._search_space(arguments)
        self._make_sampler()
        notes = _checks.warnings(self.space, self.leaves, self.n_trials)
        notes += [capped] if capped else []
        scheduler = OmegaConf.select(self.config, "meta.search_scheduler")
        if scheduler and scheduler.get("lock", "flock") == "flock":
            from rlhp.asha import lock_warning

            notes += [w for w in [lock_warning(self.sweep_dir)] if w]
        for warning in notes:
            log.warning("rlhp: warning: %s", warning)
        self._make_slots()
        if self.cfg.population > 1:
            self._check_memory()

    def _search_space(self, arguments: list[str]) -> None:
        """The space, fixed overrides, constraints and prior trial, all checked on the
        composed config of a probe trial."""
        self.space, self.fixed = _space.parse(self.cfg.params, arguments)
        self.ordered = _space.ordered(self.cfg.params, arguments)  # ordered(...) values by name
        if not self.space:
            raise ConfigError("nothing to search: hydra.sweeper.params is empty")
        _space.check_paths(self.space, self.config)
        values = _space.as_values(self.space, self.ordered)
        _space.check_types(values, self.config)
        _space.check_domains(values)
        self.constraints = list(self.cfg.constraints)
        self.leaves = _space.leaves(self.config)
        self.metric = _results.metric(self.leaves.get("objective"))
        _constraint.check(self.constraints, set(self.space) | set(self.leaves))
        prior = _space.prior(values, self.config, self.cfg.prior_values)
        index = {k: v.index(prior[k]) for k, v in self.ordered.items() if k in prior}
        self.prior = {**prior, **index}
        self.probe = probe = self._trial_config({**self._any_params(), **self.prior})
        check(probe, here=self._here(), searched=self.space)
        self._check_feasible()

    def _make_sampler(self) -> None:
        """The configured sampler; grid and dgd get the grid of the space, prior_spread
        centres it on the prior."""
        self.sampler = instantiate(
            self.sampler_cfg,
            _execution_whitelist_=(
                "optuna.samplers.*",
                "hydra_plugins.hydra_optuna_sweeper.*",
                "rlhp.sweep._dgd.*",
            ),
        )
        func = getattr(self.sampler, "func", None)
        self.is_grid = func is optuna.samplers.GridSampler
        if func is not None:
            self.grid = _space.grid(self.space, self.prior)
            self.sampler = self.sampler(self.grid)
        if self.cfg.prior_spread is None:
            return
        if outside := [k for k in self.space if k not in self.prior]:
            name = outside[0]
            raise ConfigError(
                f"hydra.sweeper.prior_spread centres the search on the prior, but {name}="
                f"{self.leaves.get(name.lstrip('+'))} is outside its search space "
                f"{_space.describe(self.space[name])}; set hydra.sweeper.prior_values.{name}"
            )
        seed = OmegaConf.select(self.sampler_cfg, "seed", default=None)
        self.sampler = _centred.centred(self.sampler, self.prior, self.cfg.prior_spread, seed)

    def _here(self) -> bool:
        """Whether trials run on this machine (not on SLURM nodes)."""
        return type(self.launcher).__name__ in ("LocalLauncher", "BasicLauncher")

    def _check_memory(self) -> None:
        """ConfigError when the population jobs cannot fit in memory: what this machine has
        free, which the local slots share, or a SLURM job's meta.search_resources.mem_gb."""
        from rlhp.population import available_memory, member_bytes

        member = member_bytes(self.probe)
        members = self.cfg.population * self.leaves["max_session"]
        if self._here():
            memory, jobs = available_memory(), self.slots
        elif mem_gb := OmegaConf.select(self.config, "meta.search_resources.mem_gb"):
            memory, jobs = int(mem_gb * 2**30), 1
        else:
            return
        if problem := _checks.population_memory(member, members, jobs, memory):
            raise ConfigError(problem)

    def _make_slots(self) -> None:
        """Trial slots of the launcher: CPU cores locally, _slurm.slots on SLURM, n_trials on
        another cluster, unless max_concurrent says; SLURM is checked (and GPU sharing set up)
        before launch."""
        kind = type(self.launcher).__name__
        local = kind in ("LocalLauncher", "BasicLauncher")
        self.slots = self.cfg.max_concurrent or (os.cpu_count() if local else self.n_trials)
        if kind == "SlurmLauncher":
            from rlhp.sweep._slurm import slots

            parallelism = self.launcher.params.get("array_parallelism")
            self.slots, note = slots(self.cfg.max_concurrent, parallelism, self.n_trials)
            if note:
                log.warning("rlhp: warning: %s", note)
        if kind == "BasicLauncher" and self.slots > 1:
            log.warning("the basic launcher runs trials in this process: one slot only")
            self.slots = 1
        self.packer = self.jobs = None  # SLURM: host jobs, or a job per trial
        if kind == "LocalLauncher":
            _local.install()
        if kind == "SlurmLauncher" and not self.cfg.dry_run:  # a dry run needs no SLURM
            self._slurm()

    def _slurm(self) -> None:
        """Map meta.search_resources.gpu to whole GPUs per trial (a job each), or to shared host
        jobs."""
        from rlhp.sweep import _slurm

        params = self.launcher.params
        gpu = OmegaConf.select(self.config, "meta.search_resources.gpu", default=0) or 0
        request = {"gpu": gpu, "cpu": params.get("cpus_per_task"), "mem_gb": params.get("mem_gb")}
        gpus = _slurm.gpu_request(params.get("gres"), math.ceil(gpu))  # ConfigError first
        typed = (gpus.get("gres") or "").split(",")[0].split(":")  # gpu:TYPE:N
        _slurm.check(params.get("partition"), request, typed[1] if len(typed) == 3 else None)
        prefix = f"rlhp_{self.sweep_dir.name}"  # job names: rlhp_<sweep dir>_<trial>
        if gpu >= 1:
            params.update(gpus)
        elif gpu > 0:
            per_gpu = round(1 / gpu)
            self.packer = _slurm.Packer(
                self.launcher, self.sweep_dir, prefix, per_gpu, self.cfg.requeue
            )
            log.info("%d trials share each GPU (meta.search_resources.gpu=%s)", per_gpu, gpu)
        if self.packer is None:
            self.jobs = _slurm.Jobs(self.launcher, prefix)

    def _check_feasible(self) -> None:
        """ConfigError, before any study is written, when the constraints reject every one of
        MAX_REJECTIONS random samples (they would reject the search's samples too)."""
        if not self.constraints:
            return
        probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(MAX_REJECTIONS):
            trial = probe.ask(self.space)
            if _constraint.violated(self.constraints, self._values(trial.params)) is None:
                return
        raise ConfigError(f"the constraints rejected {MAX_REJECTIONS} samples in a row")

    def _any_params(self) -> dict[str, Any]:
        """One valid value per dimension (the low end), to compose a config to check."""
        out = {}
        for name, dist in self.space.items():
            out[name] = dist.choices[0] if hasattr(dist, "choices") else dist.low
        return out

    def _overrides(self, params: dict[str, Any]) -> list[str]:
        return self.fixed + [f"{k}={v}" for k, v in self._external(params).items()]

    def _external(self, params: dict[str, Any]) -> dict[str, Any]:
        """Sampled params as trials get them: an ordered dimension's index as its value."""
        return {k: self.ordered[k][v] if k in self.ordered else v for k, v in params.items()}

    def _trial_config(self, params: dict[str, Any]) -> DictConfig:
        cfg = self.hydra_context.config_loader.load_sweep_config(
            self.config, self._overrides(params)
        )
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    def _values(self, params: dict[str, Any]) -> dict[str, Any]:
        """Values constraints are evaluated on: config leaves overridden by the sampled params."""
        external = self._external(params)
        return {**self.leaves, **{k: _space.decode(v) for k, v in external.items()}}

    # -- the search

    def _sweep(self, arguments: list[str]) -> None:
        self._prepare(arguments)
        if self.cfg.dry_run:
            return self._dry_run()
        _checks.sweep_dir(self.sweep_dir)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.sweep_dir / ".controller.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise ConfigError(f"another rlhp sweep is running in {self.sweep_dir}") from None
        with lock:
            study = _study.open_study(self)
            try:
                self._run(study)
            except (KeyboardInterrupt, TooManyFailures):
                self._finish(study, validate=False)  # what ran so far (Ctrl+C: trials resume)
                raise
            self._finish(study)

    def resumable(self, study: optuna.Study) -> list[Trial]:
        """The trials that were running, to launch again; a trial whose sampling was cut short
        (some parameters missing) or that a constraint rejects was never launched: rejected; one
        whose folder was launched with other values fails."""
        out = []
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            trial = Trial(study, frozen._trial_id)
            if set(frozen.params) != set(self.space):
                trial.set_user_attr("rejected", "incomplete sample")
                trial.set_user_attr("incomplete", True)
                _results.tell(study, trial, state=TrialState.FAIL)
                log.info("trial %d was never launched: its sampling was cut short", trial.number)
            elif expr := _constraint.violated(self.constraints, self._values(frozen.params)):
                _results.reject(study, trial, expr)
            elif cause := self._foreign(frozen.number, frozen.params):
                self.fail(study, trial, cause)
            else:
                out.append(trial)
        return out

    def _foreign(self, number: int, params: dict[str, Any]) -> str | None:
        """Why trial `number`'s folder holds another configuration than `params`, or None."""
        searched = [f"{k}={v}" for k, v in self._external(params).items()]
        return _identity.foreign(record.trial_dir(self.sweep_dir, number), searched)

    def _run(self, study: optuna.Study) -> None:
        """Launch trials until n_trials ran (or the grid, the budget allow); TooManyFailures
        when more than max_failure_rate of them failed."""
        if self.cfg.population > 1:
            from rlhp.sweep import _batched

            return _batched.run(self, study)
        resumed = self.resumable(study)
        trials = study.get_trials(deepcopy=False)
        launched, failed = _state.launched_failed(trials)
        self.elapsed0 = float(study.user_attrs.get("elapsed_s", 0.0))
        self.start = time.time()
        if launched:
            log.info("resuming: %d trials launched before, %d to run again", launched, len(resumed))
        exhausted = False
        running: dict[Future, Trial] = {}
        pool = ThreadPoolExecutor(self.slots)
        try:
            for trial in resumed:
                running[pool.submit(self._launch, trial)] = trial
            while True:
                while (
                    not exhausted
                    and len(running) < self.slots
                    and launched < self.n_trials
                    and failed <= self.cfg.max_failure_rate * self.n_trials
                    and not self.over_budget()
                    and not self.best_holds(study)
                ):
                    trial = self.ask(study)
                    if trial is None:
                        exhausted = True
                        break
                    launched += 1
                    running[pool.submit(self._launch, trial)] = trial
                self.report(study)
                if not running:
                    break
                # woken every REDRAW_S: the progress line follows the running trials' frames
                done, _ = wait(running, timeout=_state.REDRAW_S, return_when=FIRST_COMPLETED)
                for future in done:
                    failed += not self._ended(study, running.pop(future), future)
                if done:
                    study.set_user_attr("elapsed_s", self.elapsed())
        except BaseException:  # Ctrl+C, a full disk: running trials stay RUNNING and resume
            self.stop()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if self.packer is not None:
                self.packer.close()
            self.settle(study, running.values())
        if failed > self.cfg.max_failure_rate * self.n_trials:
            raise TooManyFailures(failed, self.cfg.max_failure_rate, self.n_trials)

    def settle(self, study: optuna.Study, unrecorded: Iterable[Trial]) -> None:
        """Once the search stopped: record the trials whose result appeared meanwhile (the
        others stay RUNNING and resume), and write state.yaml as the study now is."""
        for trial in unrecorded:
            run_dir = record.trial_dir(self.sweep_dir, trial.number)
            if record.TrialResult.exists(run_dir):
                self.record(study, trial, run_dir)
        self.report(study)

    def stop(self) -> None:
        """Every running trial (local process, SLURM job or host job) checkpoints and ends, not
        recorded and not requeued: it stays RUNNING and the same command resumes it."""
        self.stopping = True  # a job that ends now is not run again
        _local.stop()
        for jobs in (self.jobs, self.packer):
            if jobs is not None:
                jobs.stop()

    def elapsed(self) -> float:
        return self.elapsed0 + time.time() - self.start

    def best_holds(self, study: optuna.Study) -> bool:
        """The best configuration (by the mean over its runs) held for stop_when_best_holds
        completed runs: no new trial starts."""
        if (n := self.cfg.stop_when_best_holds) is None:
            return False
        trials = study.get_trials(deepcopy=False)
        steps = best_history(trials, self.cfg.direction == "maximize")
        if held := bool(steps) and steps[-1].held >= n:
            log.info("the best configuration (trial %d's) held for %d runs", steps[-1].best, n)
        return held

    def over_budget(self) -> bool:
        hours = self.cfg.budget_hours
        if hours is None or self.elapsed() <= hours * 3600:
            return False
        if not self.budget_ended:
            self.budget_ended = True
            log.info("rlhp: budget_hours=%g ended the search: no new trial starts", hours)
        return True

    def ask(self, study: optuna.Study, fixed: dict[str, Any] | None = None) -> Trial | None:
        """The next trial that breaks no constraint, with `fixed` parameters as given; None when
        a grid is exhausted. A rejected sample is told to the sampler as infeasible (TPE learns
        to avoid it); after PATIENCE rejections in a row a random feasible sample is drawn
        instead, so a search never ends on rejections."""
        for rejected in itertools.count():
            if self.is_grid and self._grid_exhausted(study):
                return None
            fallback = rejected >= PATIENCE and not self.is_grid
            if fallback and rejected == PATIENCE * MAX_REJECTIONS:  # a fixed structure allows none
                raise ConfigError(
                    f"the constraints rejected {rejected} samples in a row with {fixed}"
                )
            trial = self._ask(study, fixed, fallback)
            if (expr := _constraint.violated(self.constraints, self._values(trial.params))) is None:
                return trial
            _results.reject(study, trial, expr)
            log.info("rejected trial %d %s: matches %r", trial.number, trial.params, expr)

    def _ask(self, study: optuna.Study, fixed: dict[str, Any] | None, fallback: bool) -> Trial:
        """study.ask through the search's sampler, or a random one (`fallback`), with `fixed`
        parameters held (Optuna's PartialFixedSampler)."""
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
            trial = study.ask(self.space)
        finally:
            study.sampler = sampler
        if fallback:
            trial.set_user_attr("sampler", "random (fallback)")
        return trial

    def _grid_exhausted(self, study: optuna.Study) -> bool:
        """Every grid point ran or is running (GridSampler.is_exhausted hands out running ones)."""
        taken = {t.system_attrs.get("grid_id") for t in study.get_trials(deepcopy=False)}
        return taken >= set(range(math.prod(len(v) for v in self.grid.values())))

    def _seed(self, number: int) -> list[str]:
        """seed_per_trial: trial N's sessions start at seed + N * max_session; by default
        every trial uses the same seeds (common random numbers: less noisy comparisons), but
        with dgd, whose re-runs of a configuration are there to sharpen its mean."""
        dgd = OmegaConf.select(self.sampler_cfg, "_target_") == "rlhp.sweep._dgd.DGDSampler"
        if not (dgd if self.cfg.seed_per_trial is None else self.cfg.seed_per_trial):
            return []
        return [f"seed={self.leaves['seed'] + number * self.leaves['max_session']}"]

    def _launch(self, trial: Trial):
        """The trial's job, run again from its checkpoint when its process dies (max_retries)."""
        overrides = self._overrides(trial.params) + self._seed(trial.number)
        return _results.retried(
            lambda: self.launch_job(trial.number, overrides),
            trial,
            record.trial_dir(self.sweep_dir, trial.number),
            self.cfg.max_retries,
            lambda: self.stopping,
        )

    def launch_job(self, number: int, overrides: list[str]):
        """Job `number` (a trial, or a population job) through the launcher; its return.
        NotSubmitted (SLURM refused it for good) stops the search as Ctrl+C does."""
        from rlhp.slurm import NotSubmitted

        try:
            if self.packer is not None:
                return self.packer.run(number, overrides)
            for attempt in itertools.count(1):
                try:
                    if self.jobs is not None:
                        return self.jobs.run(number, overrides)
                    return self.launcher.launch([overrides], initial_job_idx=number)[0]
                except Exception as e:  # the job ended without a result: cancelled, killed, ...
                    timeouts = self.launcher.params.get("max_num_timeout", 3)
                    if not self.cfg.requeue or attempt > timeouts:
                        raise
                    log.warning("job %d ended (%s): queued again", number, e)
        except NotSubmitted:
            self.refused = True
            if number >= record.JOB_BASE:  # the batched loop stops first (sw.refused), or it
                (self.jobs or self.packer).stopping.wait()  # would fail the job's trials
            raise

    def _ended(self, study: optuna.Study, trial: Trial, future: Future) -> bool:
        """Record a trial whose job ended; False when it failed."""
        try:
            ret = future.result()
            ret.return_value  # noqa: B018  raises the trial's own exception
            run_dir = Path(ret.hydra_cfg.hydra.runtime.output_dir)
        except Exception as e:
            run_dir = record.trial_dir(self.sweep_dir, trial.number)
            if not record.TrialResult.exists(run_dir):  # else it ended by its result
                return self.fail(study, trial, e)
        return self.record(study, trial, run_dir)

    def fail(self, study: optuna.Study, trial: Trial, e: Exception | str) -> bool:
        return _results.fail(study, trial, e, self.sweep_dir)

    def record(self, study: optuna.Study, trial: Trial, run_dir: Path) -> bool:
        return _results.record_result(study, trial, run_dir, self.sweep_dir, self.metric)

    def report(self, study: optuna.Study, populations: dict | None = None) -> None:
        """state.yaml and the progress line; `populations`: jobs and members of a batched
        search."""
        parallel = self.slots * self.cfg.population
        queues = self.jobs is not None or self.packer is not None  # SLURM: jobs may wait
        since = self.start if queues else None
        state = _state.summary(
            study, self.n_trials, self.elapsed(), parallel, self.sweep_dir, since
        )
        self.reported = time.time()
        if populations is not None:
            state["populations"] = populations
        if self.budget_ended:
            state["ended_by"] = f"budget_hours={self.cfg.budget_hours:g}"
        _state.write(self.sweep_dir, state)
        _state.progress(state)

    def _finish(self, study: optuna.Study, validate: bool = True) -> None:
        """optimization_results.yaml, the analysis (CSV, graphs, importance, best.yaml) and,
        when asked, the validation stage."""
        from rlhp.analyze import analyze, validation_graph

        if sys.stderr.isatty():
            print(file=sys.stderr)
        complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if complete:
            best = study.best_trial
            results = {"name": "rlhp", "best_trial": best.number, "best_value": best.value}
            params = {k: record.decode(v) for k, v in self._external(best.params).items()}
            results["best_params"] = params
            OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")
            log.info("best trial %d: %.4f with %s", best.number, best.value, params)
        else:
            log.warning("no trial completed")
        analyze(self.sweep_dir)
        if validate and complete and (top_k := self.cfg.validate.top_k) > 0:
            from rlhp.validate import validate

            validate(
                self.sweep_dir, top_k, max_session=self.cfg.validate.max_session, slots=self.slots
            )
            validation_graph(self.sweep_dir)

    def _dry_run(self) -> None:
        """Print the first n_trials sampled configurations after constraints; train nothing."""
        study = optuna.create_study(sampler=self.sampler, direction=self.cfg.direction)
        if self.cfg.prior and self.prior and not self.is_grid:
            study.enqueue_trial(self.prior)
        for i in range(self.n_trials):
            trial = self.ask(study)
            if trial is None:
                break
            print(f"trial {i}: " + " ".join(self._overrides(trial.params)[len(self.fixed) :]))
            _results.tell(study, trial, state=TrialState.FAIL)
        rejected = sum(1 for t in study.trials if "rejected" in t.user_attrs)
        print(f"rlhp: dry run, {rejected} sampled configurations rejected by constraints")
