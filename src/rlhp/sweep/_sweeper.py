"""The rlhp sweeper: Optuna samples, constraints filter, trial slots refill as soon as one frees.

SweeperImpl is the Hydra-facing set-up, in the order a search runs: every check before anything
is launched (the space, constraints and a probe trial's composed config, the sampler, the slots,
SLURM and memory), then the study (_study: the dir's one study, _identity), the one search loop
(_loop) over the study's trials (_source) with the strategy the settings ask for (one process
per trial, _single; populations, _batched), every job launched one way (_launch), and the
analysis at its end. The study lives in an Optuna JournalStorage file in the sweep dir;
re-running the same command resumes it: finished trials are kept and trials that were running
are launched again under the same number, so they resume from their checkpoints.
"""

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock, Timeout
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import TrialState

from rlhp import record
from rlhp.config import check, population_size
from rlhp.errors import ConfigError, RlhpError, TooManyFailures
from rlhp.inbox import group_size
from rlhp.sweep import _centred, _checks, _constraint, _local, _loop, _results, _space, _study
from rlhp.sweep._launch import Launch
from rlhp.sweep._source import MAX_REJECTIONS, Search, TrialSource

log = logging.getLogger("rlhp.sweep")
DGD = "rlhp.sweep._dgd.DGDSampler"


class SweeperImpl:
    def __init__(self, sampler: Any, **cfg: Any) -> None:
        self.sampler_cfg = sampler
        self.cfg = OmegaConf.create(cfg)
        for note in _checks.renamed(self.cfg):
            print(f"rlhp: warning: {note}", file=sys.stderr)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launch = Launch(config, hydra_context, task_function, self.cfg.requeue)
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def sweep(self, arguments: list[str]) -> None:
        _local.stop_on_sigterm()  # stop as on Ctrl+C
        try:
            self._sweep(arguments)
        except RlhpError as e:
            print(f"rlhp: error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as e:
            if self.launch.refused:  # SLURM refused a job for good: its one error line was logged
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
        self.cfg.population, capped = population_size(self.cfg.population, self.n_trials)
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
        self.slots = self.launch.slots(self.cfg.max_concurrent, self.n_trials)
        if not self.cfg.dry_run:  # a dry run needs no SLURM
            self.launch.connect(self.sweep_dir)
        if self.cfg.population > 1:
            self._check_memory()

    def _search_space(self, arguments: list[str]) -> None:
        """The space, fixed overrides, constraints and prior trial, all checked on the
        composed config of a probe trial."""
        self.space, fixed = _space.parse(self.cfg.params, arguments)
        self.ordered = _space.ordered(self.cfg.params, arguments)  # ordered(...) values by name
        if not self.space:
            raise ConfigError("nothing to search: hydra.sweeper.params is empty")
        _space.check_paths(self.space, self.config)
        values = _space.as_values(self.space, self.ordered)
        _space.check_types(values, self.config)
        _space.check_domains(values)
        constraints = list(self.cfg.constraints)
        self.leaves = _space.leaves(self.config)
        _constraint.check(constraints, set(self.space) | set(self.leaves))
        dgd = OmegaConf.select(self.sampler_cfg, "_target_") == DGD  # its re-runs sharpen a mean
        seed_per_trial = dgd if self.cfg.seed_per_trial is None else self.cfg.seed_per_trial
        self.search = Search(
            self.cfg, self.space, fixed, self.ordered, constraints, self.leaves, self.sweep_dir,
            seed_per_trial=seed_per_trial,
        )  # fmt: skip
        prior = _space.prior(values, self.config, self.cfg.prior_values)
        index = {k: v.index(prior[k]) for k, v in self.ordered.items() if k in prior}
        self.prior = {**prior, **index}
        self.probe = probe = self.compose(self.search.overrides({**self._low(), **self.prior}))
        with open_dict(probe):
            del probe["hydra"]
        check(probe, here=self.launch.here, searched=self.space)
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
            self.search.grid = _space.grid(self.space, self.prior)
            self.sampler = self.sampler(self.search.grid)
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

    def _check_memory(self) -> None:
        """ConfigError when the population jobs cannot fit in memory: what this machine has
        free, which the local slots share, or a SLURM job's meta.search_resources.mem_gb."""
        from rlhp.population import available_memory, member_bytes
        from rlhp.sweep._batched import slot_trials

        member = member_bytes(self.probe)
        groups = min(self.cfg.structure_groups, self.cfg.population)  # each ceil(P / G) trials
        trials = groups * group_size(self.cfg.population, groups)
        members = slot_trials(trials) * self.leaves["max_session"]
        if self.launch.here:
            memory, slots = available_memory(), self.slots
        elif mem_gb := OmegaConf.select(self.config, "meta.search_resources.mem_gb"):
            memory, slots = int(mem_gb * 2**30), 1  # per job
        else:
            return
        if problem := _checks.population_memory(member, members, slots, memory):
            raise ConfigError(problem)

    def _check_feasible(self) -> None:
        """ConfigError, before any study is written, when the constraints reject every one of
        MAX_REJECTIONS random samples (they would reject the search's samples too)."""
        if not self.search.constraints:
            return
        probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(MAX_REJECTIONS):
            if self.search.violated(probe.ask(self.space).params) is None:
                return
        raise ConfigError(f"the constraints rejected {MAX_REJECTIONS} samples in a row")

    def _low(self) -> dict[str, Any]:
        """One valid value per dimension (the low end), to compose a config to check."""
        out = {}
        for name, dist in self.space.items():
            out[name] = dist.choices[0] if hasattr(dist, "choices") else dist.low
        return out

    def compose(self, overrides: list[str]) -> DictConfig:
        """A trial's config (with its hydra node) as the launcher composes it."""
        return self.hydra_context.config_loader.load_sweep_config(self.config, overrides)

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

    def _run(self, study: optuna.Study) -> None:
        """The search loop with the strategy of hydra.sweeper.population."""
        queues = self.launch.jobs is not None or self.launch.packer is not None
        source = TrialSource(self.search, study, self.slots * self.cfg.population, queues)
        if self.cfg.population > 1:
            from rlhp.sweep._batched import Batched

            strategy = Batched(source, self.launch, self.slots, self.cfg.population, self.compose)
        else:
            from rlhp.sweep._single import Single

            strategy = Single(source, self.launch, self.slots)
        _loop.run(source, strategy, self.launch)

    def _finish(self, study: optuna.Study, validate: bool = True) -> None:
        """optimization_results.yaml, the analysis (CSV, importance, best.yaml, the graphs unless
        graphs=false) and, when asked, the validation stage."""
        from rlhp.analyze import analyze, validation_graph

        if sys.stderr.isatty():
            print(file=sys.stderr)
        complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if complete:
            best = study.best_trial
            results = {"name": "rlhp", "best_trial": best.number, "best_value": best.value}
            params = {k: record.decode(v) for k, v in self.search.external(best.params).items()}
            results["best_params"] = params
            OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")
            log.info("best trial %d: %.4f with %s", best.number, best.value, params)
        else:
            log.warning("no trial completed")
        analyze(self.sweep_dir, graphs=self.cfg.graphs)
        if validate and complete and (top_k := self.cfg.validate.top_k) > 0:
            from rlhp.validate import validate

            validate(
                self.sweep_dir, top_k, max_session=self.cfg.validate.max_session, slots=self.slots
            )
            if self.cfg.graphs:
                validation_graph(self.sweep_dir)

    def _dry_run(self) -> None:
        """Print the first n_trials sampled configurations after constraints; train nothing."""
        study = optuna.create_study(sampler=self.sampler, direction=self.cfg.direction)
        if self.cfg.prior and self.prior and not self.is_grid:
            study.enqueue_trial(self.prior)
        source = TrialSource(self.search, study, self.slots, queues=False)
        for i in range(self.n_trials):
            if (trial := source.ask()) is None:
                break
            overrides = self.search.overrides(trial.params)[len(self.search.fixed) :]
            print(f"trial {i}: " + " ".join(overrides))
            _results.tell(study, trial, state=TrialState.FAIL)
        rejected = sum(1 for t in study.trials if "rejected" in t.user_attrs)
        print(f"rlhp: dry run, {rejected} sampled configurations rejected by constraints")
