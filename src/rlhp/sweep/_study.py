"""The study of a sweep dir: opened, or created, under the rules of rlhp.sweep._identity (one
study per dir, the settings of its first launch), with the space it began with."""

import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution

from rlhp import record
from rlhp.errors import ConfigError
from rlhp.sweep import _identity, _space
from rlhp.sweep._identity import NEW_DIR

METRIC = {"final": "total_reward_ma", "auc": "total_reward_ma (mean)", "eval": "eval_return"}


def open_study(sw: Any) -> optuna.Study:
    """The dir's study (rlhp.sweep._identity): resumed with the storage, name and settings
    of its first launch, or created in a dir no other search left trials in."""
    pin = _identity.read(sw.sweep_dir) or {}
    url = sw.cfg.storage if sw.cfg.storage is not None else pin.get("storage")
    name = sw.cfg.study_name or pin.get("study_name")
    name = name or _identity.study_name(url, sw.sweep_dir)
    where = url or f"{sw.sweep_dir}/{record.JOURNAL}"
    if pin and (url, name) != (pin["storage"], pin["study_name"]):
        raise ConfigError(
            f"{sw.sweep_dir} belongs to study {pin['study_name']!r} in "
            f"{pin['storage'] or record.JOURNAL}, not {name!r} in {url or record.JOURNAL}; "
            f"{NEW_DIR}"
        )
    journal = record.journal_path(url, sw.sweep_dir)
    storage = None if journal and not journal.exists() else record.open_storage(url, sw.sweep_dir)
    now = _identity.settings(sw.leaves, set(sw.space))
    if storage and name in optuna.get_all_study_names(storage):  # resume: checks first
        study = optuna.load_study(study_name=name, storage=storage, sampler=sw.sampler)
        _check_resume(sw, study, pin, now)
    elif pin:
        raise ConfigError(
            f"the study {name!r} of {sw.sweep_dir} is gone from {where}: its trial folders"
            f" hold that study's results; restore it, or {NEW_DIR}"
        )
    elif left := _identity.left_behind(sw.sweep_dir):
        raise ConfigError(
            f"{sw.sweep_dir} holds {left} of a search whose study is not in {where} (no "
            f"study {name!r}); {NEW_DIR}"
        )
    else:
        study = optuna.create_study(
            study_name=name,
            storage=storage or record.open_storage(url, sw.sweep_dir),
            sampler=sw.sampler,
            direction=sw.cfg.direction,
        )
    if "id" not in study.user_attrs:  # new, or begun before sweep.yaml
        study.set_user_attr("id", _identity.new_id())
    if not pin:
        _identity.write(sw.sweep_dir, url, name, study.user_attrs["id"], now)
    trials = study.get_trials(deepcopy=False)
    if difference := _space.changed(_stored_space(sw, study, trials), sw.space):
        raise ConfigError(
            f"the search space of {sw.sweep_dir} changed: {difference}; resume with the "
            f"space it began with, or {NEW_DIR}"
        )
    if not trials:
        space = {k: distribution_to_json(v) for k, v in sw.space.items()}
        study.set_user_attr("space", space)
        study.set_user_attr("ordered", sw.ordered)  # rlhp.analyze shows the values
        with warnings.catch_warnings():  # experimental since optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC.get(sw.leaves.get("objective"), "objective")])
        # a grid runs every point anyway; an enqueued prior would get no grid point of its own
        if sw.cfg.prior and sw.prior and not sw.is_grid:
            study.enqueue_trial(sw.prior, user_attrs={"prior": True})
    return study


def _check_resume(sw: Any, study: optuna.Study, pin: dict, settings: dict) -> None:
    """ConfigError when the study is not the dir's own, or the search would resume it with
    another direction or another setting than it began with."""
    direction = study.direction.name.lower()
    if direction != sw.cfg.direction:
        raise ConfigError(
            f"the study in {sw.sweep_dir} is to {direction}, not to {sw.cfg.direction}; {NEW_DIR}"
        )
    if not pin:
        return
    if study.user_attrs.get("id") != pin["study_id"]:
        raise ConfigError(
            f"study {study.study_name!r} in {pin['storage'] or record.JOURNAL} is not the one "
            f"{sw.sweep_dir} began (another search made one of that name); "
            f"{NEW_DIR}"
        )
    if difference := _identity.changed(pin["settings"], settings):
        raise ConfigError(
            f"a setting of {sw.sweep_dir} changed since its first launch: {difference}; "
            f"resume with it as it was, or {NEW_DIR}"
        )


def _stored_space(sw: Any, study: optuna.Study, trials: list) -> dict[str, BaseDistribution]:
    """The space the study began with (read from its trials for studies older than the
    `space` attribute); this search's own for a new study."""
    if stored := study.user_attrs.get("space"):
        return {k: json_to_distribution(v) for k, v in stored.items()}
    space = {k: d for t in trials for k, d in t.distributions.items()}
    return space or dict(sw.space)
