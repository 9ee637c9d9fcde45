"""Checks before launch: hydra.sweeper settings out of range (an error), and warnings: a search
too small for its space, searched keys that cannot change the run, settings under a deprecated
name."""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlhp.errors import ConfigError
from rlhp.inbox import group_size

TRIALS_PER_DIMENSION = 3  # SLM-Lab's rule of thumb

# searched key -> (the key it depends on, the values of that key under which it does nothing)
INERT = {
    "env.eval_epsilon": ("eval_episodes", (0,)),
    "algo.alpha_per": ("algo.prioritized", (False,)),
    "algo.beta": ("algo.prioritized", (False,)),
    "algo.clip_vloss": ("algo.val_loss_coef", (0, 0.0)),
}
INERT_PREFIX = {"meta.search_scheduler.": ("meta.search_scheduler", (None,))}

# hydra.sweeper.OLD -> NEW; the old names are accepted until the release after 0.1
RENAMED = {"priors": "prior_values", "validate.sessions": "validate.max_session"}
# the stock Hydra Optuna sweeper's names -> rlhp's; taken with a hint, not deprecated
OPTUNA_SWEEPER = {"n_jobs": "max_concurrent"}


def warnings(space: Mapping[str, Any], leaves: Mapping[str, Any], n_trials: int) -> list[str]:
    """What to warn about before launch (pure: the space, the config's leaves, n_trials)."""
    out = []
    want = TRIALS_PER_DIMENSION * len(space)
    if n_trials < want:
        out.append(
            f"n_trials={n_trials} is below {TRIALS_PER_DIMENSION} per searched dimension "
            f"({len(space)} dimensions: {want}); the search will barely explore its space"
        )
    for name in space:
        rule = INERT.get(name) or next(
            (r for p, r in INERT_PREFIX.items() if name.startswith(p)), None
        )
        if rule is None or rule[0] in space or rule[0] not in leaves:
            continue
        key, values = rule
        value = leaves[key]
        if any(value is v or value == v and type(value) is type(v) for v in values):
            out.append(f"searched {name} cannot change the run while {key}={value}")
    return out


def renamed(cfg: DictConfig) -> list[str]:
    """Move each hydra.sweeper setting given under its old name (RENAMED) or the stock Optuna
    sweeper's name (OPTUNA_SWEEPER) to rlhp's name in `cfg`; one line for each."""
    out = []
    for old, new in (RENAMED | OPTUNA_SWEEPER).items():
        if (value := OmegaConf.select(cfg, old)) is not None:
            OmegaConf.update(cfg, new, value, merge=False)
            why = "is deprecated" if old in RENAMED else "is the Optuna sweeper's name"
            out.append(f"hydra.sweeper.{old} {why}; use hydra.sweeper.{new}")
    return out


def settings(cfg: DictConfig) -> None:
    """ConfigError for a hydra.sweeper setting out of its range."""
    bad = [
        ("n_trials", cfg.n_trials, "an integer >= 1", cfg.n_trials < 1),
        (
            "max_concurrent",
            cfg.max_concurrent,
            "null (CPU cores) or >= 1",
            cfg.max_concurrent is not None and cfg.max_concurrent < 1,
        ),
        (
            "budget_hours",
            cfg.budget_hours,
            "null or > 0",
            cfg.budget_hours is not None and cfg.budget_hours <= 0,
        ),
        ("max_failure_rate", cfg.max_failure_rate, "in [0, 1]", not 0 <= cfg.max_failure_rate <= 1),
        (
            "direction",
            cfg.direction,
            "maximize or minimize",
            cfg.direction not in ("maximize", "minimize"),
        ),
        ("population", cfg.population, "an integer >= 1", cfg.population < 1),
        (
            "structure_groups",
            cfg.structure_groups,
            "an integer >= 1",
            cfg.structure_groups < 1,
        ),
        ("max_retries", cfg.max_retries, "an integer >= 0", cfg.max_retries < 0),
        (
            "population_trials",
            cfg.population_trials,
            "null or >= a structure group's population (population / structure_groups)",
            cfg.population_trials is not None
            and min(cfg.population, cfg.structure_groups) >= 1  # else refused above
            and cfg.population_trials < group_size(cfg.population, cfg.structure_groups),
        ),
        ("validate.top_k", cfg.validate.top_k, ">= 0", cfg.validate.top_k < 0),
        ("validate.max_session", cfg.validate.max_session, ">= 1", cfg.validate.max_session < 1),
        (
            "prior_spread",
            cfg.prior_spread,
            "null or in (0, 1]",
            cfg.prior_spread is not None and not 0 < cfg.prior_spread <= 1,
        ),
        (
            "stop_when_best_holds",
            cfg.stop_when_best_holds,
            "null or >= 1",
            cfg.stop_when_best_holds is not None and cfg.stop_when_best_holds < 1,
        ),
    ]
    for name, value, allowed, wrong in bad:
        if wrong:
            raise ConfigError(f"hydra.sweeper.{name} must be {allowed}, got {value!r}")


def population_memory(member: int, members: int, slots: int, memory: int) -> str | None:
    """Why `slots` slots of at most `members` members each (of `member` bytes) cannot fit in
    `memory` bytes, saying what fits; None when they fit."""
    if member * members * slots <= memory:
        return None
    most = memory // (member * slots)
    fits = f"at most {most} members per slot fit" if most else "not one member per slot fits"
    return (
        f"{slots} slot(s) of up to {members} members need about "
        f"{member * members * slots / 2**30:.1f} GiB ({member / 2**20:.2f} MiB a member), more "
        f"than the {memory / 2**30:.1f} GiB of memory they have; {fits}: lower "
        "hydra.sweeper.population (a slot holds up to 1.5 x population x max_session members, "
        "its retired groups ending beside the open ones) or max_concurrent"
    )


def sweep_dir(path: Path) -> None:
    """ConfigError for a hydra.sweep.dir that cannot be made a directory: a file, under a file,
    or with a name longer than its filesystem allows."""
    existing = next(p for p in [path, *path.parents] if _exists(p))
    if not existing.is_dir():
        what = "is a file" if existing == path else f"is under {existing}, a file"
        raise ConfigError(f"hydra.sweep.dir={path} {what}; name a directory")
    limit = os.pathconf(existing, "PC_NAME_MAX")
    if long := [n for n in path.relative_to(existing).parts if len(os.fsencode(n)) > limit]:
        raise ConfigError(
            f"hydra.sweep.dir: the name {long[0][:40]}... is {len(os.fsencode(long[0]))} bytes "
            f"long, more than the {limit} its filesystem allows"
        )


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long
        return False
