"""What the sweeper records in the study when a trial ends: its result.yaml (rlhp.record) as
the trial's value, state, figures and learning curve, or its failure."""

import logging
import math
import os
import re
import signal
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import Trial, TrialState

from rlhp import record

log = logging.getLogger("rlhp.sweep")
ENDED_WITHOUT = "its population job ended without it"
RETRIES = "retries"  # a trial's user attribute: the times it ran again after its process died


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


def reject(study: optuna.Study, trial: Trial, expr: str) -> None:
    """Record a sample that constraint `expr` rejects: never launched, and infeasible to the
    sampler (stopped with a constraint > 0: TPE puts it among the bad trials, a FAIL it would
    ignore; samplers that do not use constraints read neither)."""
    trial.set_user_attr("rejected", expr)
    trial.set_constraint("rlhp", 1.0)
    with warnings.catch_warnings():  # CmaEsSampler says it will not use the constraint
        warnings.simplefilter("ignore", UserWarning)
        tell(study, trial, state=TrialState.PRUNED)


def one_line(e: BaseException) -> str:
    """An exception in one line: `Type: the message's last line`."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[-1]}" if lines else type(e).__name__


def retriable(error: str) -> bool:
    """Whether a trial that failed with `error` may run again from its checkpoint: its process
    was killed by a signal (the OOM killer, a lost node, kill -9; not Ctrl+C's SIGINT), its
    SLURM job ended OUT_OF_MEMORY or NODE_FAIL, or its population job ended without it; never an
    error of its own."""
    killed = re.search(r"killed by signal (\d+)", error)
    return (
        (killed is not None and int(killed.group(1)) != signal.SIGINT)
        or re.search(r"\((OUT_OF_MEMORY|NODE_FAIL)\b", error) is not None
        or ENDED_WITHOUT in error
    )


def retry(trial: Trial, error: str, max_retries: int) -> bool:
    """Whether the trial runs again from its checkpoint after failing with `error` (it stays
    RUNNING): retriable, at most `max_retries` times, counted in its `retries` attribute."""
    done = int(trial.user_attrs.get(RETRIES, 0))
    if not retriable(error) or done >= max_retries:
        return False
    trial.set_user_attr(RETRIES, done + 1)
    log.warning(
        "trial %d: %s; it runs again from its checkpoint (retry %d of %d)",
        trial.number,
        error.splitlines()[-1][:300],
        done + 1,
        max_retries,
    )
    return True


def retried(
    launch: Callable[[], Any], trial: Trial, run_dir: Path, max_retries: int, stopping: Callable
) -> Any:
    """launch() (a trial's job, run to its end), again while it fails retriably, the search is
    not `stopping()` and no result.yaml appeared (the sweeper records a trial by its result)."""
    while True:
        try:
            return launch()
        except Exception as e:
            if stopping() or record.TrialResult.exists(run_dir):
                raise
            if not retry(trial, one_line(e), max_retries):
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
