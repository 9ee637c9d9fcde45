"""A search as read from its sweep dir: the study, its space, the trials' learning curves."""

import ast
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from omegaconf import OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial

from rlhp.record._layout import (
    HYDRA,
    HYDRA_DIR,
    METRICS,
    SWEEP,
    VALIDATION_CSV,
    config_path,
    trial_dir,
    trial_number,
)
from rlhp.record._storage import journal_path, open_storage

log = logging.getLogger("rlhp.record")


class AnalysisError(Exception):
    """The sweep dir cannot be read (no study), or an analysis step failed with strict=True."""


def decode(value: Any) -> Any:
    """A sampled value as the trial sees it: categorical choices come encoded as strings."""
    if not isinstance(value, str):
        return value
    if value in ("true", "false"):
        return value == "true"
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


@dataclass
class Sweep:
    """A search as read from its sweep dir."""

    dir: Path
    study: optuna.Study
    trials: list[FrozenTrial]
    space: dict[str, BaseDistribution]  # searched parameters by dotted name, in search order
    maximize: bool
    objective: str  # final | auc | eval, the train config's `objective`
    curves: dict[int, pd.DataFrame] = field(default_factory=dict)  # metrics.csv by trial
    hydra: Any = None  # one trial's hydra node (storage, config sources, run dir)
    ordered: dict[str, list] = field(default_factory=dict)  # ordered(...) values by name

    def value(self, name: str, param: Any) -> Any:
        """A trial's parameter as the trial got it (an ordered dimension's index as its value)."""
        return decode(self.ordered[name][param] if name in self.ordered else param)

    def trial_dir(self, number: int) -> Path:
        return trial_dir(self.dir, number)

    @property
    def objective_label(self) -> str:
        what = {
            "final": "final total_reward_ma",
            "auc": "mean total_reward_ma over training",
            "eval": "final greedy eval_return",
        }
        return f"objective ({what.get(self.objective, self.objective)})"


def hydra_node(sweep_dir: Path) -> Any:
    """The hydra node of one trial (storage, study name, cwd), or None before any trial ran."""
    for path in sorted(sweep_dir.glob(f"*/{HYDRA_DIR}/{HYDRA}")):
        if trial_number(path.parent.parent) is not None:
            try:
                return OmegaConf.load(path).hydra
            except Exception:
                continue
    return None


def pinned(sweep_dir: Path) -> dict[str, Any] | None:
    """The sweep dir's sweep.yaml (its study's storage, name and id, the settings of its first
    launch), None before one was written; yaml.YAMLError, UnicodeDecodeError when garbled."""
    try:
        return yaml.safe_load((sweep_dir / SWEEP).read_text())
    except FileNotFoundError:
        return None


def _storage(sweep_dir: Path, hydra: Any) -> Any:
    if (pin := pinned(sweep_dir)) is not None:
        url = pin["storage"]
    else:
        url = OmegaConf.select(hydra, "sweeper.storage", default=None) if hydra else None
    path = journal_path(url, sweep_dir)
    if path is not None and not path.is_file():
        raise AnalysisError(f"{sweep_dir} holds no study ({path.name} not found)")
    return open_storage(url, sweep_dir)


def _study(sweep_dir: Path, hydra: Any) -> optuna.Study:
    storage = _storage(sweep_dir, hydra)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if (pin := pinned(sweep_dir)) is not None:
        name = pin["study_name"]
    else:  # a sweep begun before sweep.yaml
        name = OmegaConf.select(hydra, "sweeper.study_name", default="rlhp") if hydra else None
        name = names[0] if len(names) == 1 else (name or "rlhp")
    if name not in names:
        raise AnalysisError(f"{sweep_dir}: no study {name!r} in the storage (found {names})")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=storage)


def _objective(sweep_dir: Path, trials: list[FrozenTrial]) -> str:
    """The train config's `objective` (from the first trial folder that has a config)."""
    for t in trials:
        path = config_path(trial_dir(sweep_dir, t.number))
        if path.is_file():
            return OmegaConf.load(path).get("objective", "final")
    return "final"


def load(sweep_dir: Path) -> Sweep:
    """The study and the trials' learning curves of a sweep dir (read only)."""
    sweep_dir = Path(sweep_dir).resolve()
    hydra = hydra_node(sweep_dir)
    study = _study(sweep_dir, hydra)
    trials = study.get_trials(deepcopy=False)
    space: dict[str, BaseDistribution] = {}
    for t in trials:
        for k, dist in t.distributions.items():
            space.setdefault(k, dist)
    ordered = study.user_attrs.get("ordered") or {}
    space.update({k: CategoricalDistribution(v) for k, v in ordered.items() if k in space})
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    sweep = Sweep(
        sweep_dir,
        study,
        trials,
        space,
        maximize,
        _objective(sweep_dir, trials),
        hydra=hydra,
        ordered=ordered,
    )
    for t in trials:
        path = sweep.trial_dir(t.number) / METRICS
        if path.is_file():
            try:
                sweep.curves[t.number] = pd.read_csv(path)
            except (pd.errors.EmptyDataError, pd.errors.ParserError):
                pass  # being rewritten: the next analysis reads it
    return sweep


def validation_table(sweep_dir: Path) -> pd.DataFrame | None:
    """validation.csv (rlhp.validate writes it), None before validation or while unreadable."""
    path = sweep_dir / VALIDATION_CSV
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as e:
        log.warning("%s not read: %s", path, e)
        return None
