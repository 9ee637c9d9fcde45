"""Structured config of the rlhp sweeper (`hydra.sweeper.*`), registered as hydra/sweeper=rlhp.

Samplers come from the Hydra Optuna sweeper's `hydra/sweeper/sampler` group:
tpe, random, grid, gp, cmaes, qmc, nsgaii; rlhp adds dgd.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from rlhp.sweep._foreign import add_ordered

add_ordered()  # plugins load before the command line parses


@dataclass
class ValidateConf:
    top_k: int = 0  # re-run the best top_k configurations at the end of the search (0: off)
    max_session: int = 4  # fresh seeds per re-run configuration (cf. the top-level max_session)
    sessions: int | None = None  # deprecated: max_session


@dataclass
class RlhpSweeperConf:
    _target_: str = "hydra_plugins.rlhp_sweeper.rlhp_sweeper.RlhpSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: Any = MISSING
    direction: str = "maximize"  # of the objective (total_reward_ma)
    storage: str | None = None  # Optuna storage URL; default: JournalStorage file in the sweep dir
    # default: rlhp in the dir's journal, rlhp:<absolute sweep dir> in a storage shared with others
    study_name: str | None = None
    n_trials: int = 20  # launched trials in the whole study, resumes included
    max_concurrent: int | None = None  # trial slots; default: CPU cores locally, n_trials else
    n_jobs: int | None = None  # the stock Optuna sweeper's name: taken as max_concurrent, a hint
    population: int = 1  # trials a slot's process trains at once (PPO, A2C); 1: one per process
    # a structure group is retired after this many trials (>= its population; null: its
    # population) and its job opens a new one whose structure (hid_layers, ...) is drawn again
    population_trials: int | None = None
    # structures (hid_layers, time_horizon, ...) a population job trains at once, each group a
    # population of population / structure_groups trials, stepped in turn; 1: one structure
    structure_groups: int = 1
    budget_hours: float | None = None  # no new trial starts after this much sweep time
    max_failure_rate: float = 0.5  # stop the search when more trials than this fail
    params: dict[str, str] = field(default_factory=dict)  # search space, Optuna sweeper grammar
    constraints: list[str] = field(default_factory=list)  # a config matching any is rejected
    prior: bool = True  # the composed config's current values run as the first trial
    prior_values: dict[str, Any] = field(default_factory=dict)  # the prior trial's values, by name
    priors: dict[str, Any] | None = None  # deprecated: prior_values
    requeue: bool = False  # a trial whose job was cancelled or killed runs again (else FAILED)
    max_retries: int = 2  # a trial whose process was killed by a signal runs again, this often
    dry_run: bool = False  # print the sampled configurations after constraints, train nothing
    graphs: bool = True  # draw the analysis graphs at the end (rlhp analyze draws them any time)
    prior_spread: float | None = None  # random/startup draws centred on the prior, std S * range
    stop_when_best_holds: int | None = None  # stop when the best config held for N more runs
    # trial N trains on seeds from seed + N * max_session; null: with dgd only (its re-runs of a
    # configuration need fresh seeds), else every trial uses the same seeds (common random numbers)
    seed_per_trial: bool | None = None
    validate: ValidateConf = field(default_factory=ValidateConf)


@dataclass
class DGDSamplerConf:
    """hydra/sweeper/sampler=dgd: Distributed Grid Descent (rlhp.sweep._dgd)."""

    _target_: str = "rlhp.sweep._dgd.DGDSampler"
    _partial_: bool = True  # the sweeper hands it the grid of the space
    seed: int | None = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="rlhp", node=RlhpSweeperConf, provider="rlhp"
)
ConfigStore.instance().store(
    group="hydra/sweeper/sampler", name="dgd", node=DGDSamplerConf, provider="rlhp"
)
