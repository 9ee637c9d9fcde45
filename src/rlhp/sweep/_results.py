"""What the sweeper records in the study when a trial ends: its result.yaml (rlhp.record) as
the trial's value, state, figures and learning curve, or its failure."""

import logging
import math
import os
import traceback
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import Trial, TrialState

from rlhp import record

log = logging.getLogger("rlhp.sweep")


def metric(objective: str) -> str:
    """The metrics.csv column a trial is ranked on (what ASHA judges) for its `objective`."""
    return "eval_return" if objective == "eval" else "total_reward_ma"


def tell(study: optuna.Study, trial: Trial, *args: Any, **kwargs: Any) -> None:
    """study.tell, where GridSampler's study.stop() after its last point (meant for optimize(),
    a RuntimeError here) is no error: the trial's state is stored before it raises."""
    try:
        study.tell(trial, *args, **kwargs)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


def fail(study: optuna.Study, trial: Trial, e: Exception | str, sweep_dir: Path) -> bool:
    """Record a trial that failed with `e` (its exception, or why in words); False. An error
    of the sweep dir's disk (full, read-only) is raised instead: not the trial's fault."""
    if isinstance(e, Exception):
        if (number := record.disk_errno(e, sweep_dir)) is not None:
            raise OSError(number, os.strerror(number)) from e
        e = "".join(traceback.format_exception_only(e)).strip()
    trial.set_user_attr("error", e[-2000:])
    tell(study, trial, state=TrialState.FAIL)
    log.warning("trial %d failed: %s", trial.number, e.splitlines()[-1][:300])
    return False


def record_result(
    study: optuna.Study, trial: Trial, run_dir: Path, sweep_dir: Path, key: str
) -> bool:
    """Record a trial from the result.yaml in its folder (`key`: the ranked metric); False
    when it failed."""
    try:
        result = record.TrialResult.read(run_dir)
    except Exception as e:
        return fail(study, trial, e, sweep_dir)
    if result.state == record.FAILED:  # a member of a population job
        return fail(study, trial, result.error, sweep_dir)
    for name, value in result.attrs().items():
        trial.set_user_attr(name, value)
    if math.isnan(result.objective):  # no episode finished
        trial.set_user_attr("error", "objective is NaN (no episode finished?)")
        tell(study, trial, state=TrialState.FAIL)
        return False
    _report_curve(trial, run_dir, result.stopped_at, key)
    if result.state == record.STOPPED:
        trial.set_user_attr("stopped_at", result.stopped_at)
        trial.report(result.objective, step=result.stopped_at)
        tell(study, trial, state=TrialState.PRUNED)
    else:
        tell(study, trial, result.objective)
    return True


def _report_curve(trial: Trial, run_dir: Path, stopped_at: int | None, key: str) -> None:
    """The ranked metric at each log point, mean over sessions, as the trial's intermediate
    values: optuna-dashboard draws them as its curves."""
    try:
        curve = pd.read_csv(run_dir / record.METRICS).dropna(subset=[key])
    except (OSError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return
    for frame, value in curve.groupby("frame")[key].mean().items():
        if stopped_at is None or frame < stopped_at:
            trial.report(float(value), step=int(frame))
