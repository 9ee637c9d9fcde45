"""One vocabulary for what became of a trial.

A trial is complete, stopped (ASHA stopped it at a rung: Optuna's PRUNED, shown as
`stopped@FRAME` with the frame it stopped at), failed, rejected (a constraint matched, never
launched), running or waiting (enqueued, not yet asked for).
"""

from optuna.trial import FrozenTrial, TrialState

COMPLETE, STOPPED, FAILED = "complete", "stopped", "failed"
REJECTED, RUNNING, WAITING = "rejected", "running", "waiting"
STATES = (COMPLETE, STOPPED, RUNNING, WAITING, FAILED, REJECTED)  # the order of a table's rows

_OPTUNA = {
    TrialState.COMPLETE: COMPLETE,
    TrialState.PRUNED: STOPPED,
    TrialState.FAIL: FAILED,
    TrialState.RUNNING: RUNNING,
    TrialState.WAITING: WAITING,
}


def state(trial: FrozenTrial) -> str:
    """The trial's state in this vocabulary."""
    return REJECTED if "rejected" in trial.user_attrs else _OPTUNA[trial.state]


def stopped_at(trial: FrozenTrial) -> int | None:
    """The frame a stopped trial stopped at (its last report for older studies)."""
    return trial.user_attrs.get("stopped_at", trial.last_step)


def label(trial: FrozenTrial) -> str:
    """The state as tables show it: a stopped trial as `stopped@FRAME`."""
    s = state(trial)
    if s == STOPPED and (at := stopped_at(trial)) is not None:
        return f"{s}@{at}"
    return s


def score(trial: FrozenTrial) -> float | None:
    """The objective: a complete trial's value, a stopped one's value at its rung."""
    if trial.state == TrialState.COMPLETE:
        return trial.value
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        values = trial.intermediate_values
        return values.get(stopped_at(trial), values[trial.last_step])
    return None
