"""The sweep's `state.yaml` and the live progress line, computed from the study."""

import sys
from pathlib import Path

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from rlhp import record


def launched_failed(trials: list[FrozenTrial]) -> tuple[int, int]:
    """How many of the trials were launched (not rejected, not waiting), how many failed."""
    states = [record.state(t) for t in trials]
    launched = sum(s not in (record.REJECTED, record.WAITING) for s in states)
    return launched, states.count(record.FAILED)


FAILURES = 5  # failed trials state.yaml gives the cause of, the latest


def cause(trial: FrozenTrial) -> str:
    """A failed trial's error, its last line."""
    lines = [ln for ln in str(trial.user_attrs.get("error", "")).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no error recorded"


def failures(trials: list[FrozenTrial]) -> dict[int, str]:
    """The latest FAILURES failed trials (by number) and why each failed."""
    failed = [t for t in trials if record.state(t) == record.FAILED]
    return {t.number: cause(t) for t in failed[-FAILURES:]}


def summary(study: optuna.Study, n_trials: int, elapsed: float, slots: int) -> dict:
    trials = study.get_trials(deepcopy=False)
    counts = {s: 0 for s in record.STATES if s != record.WAITING}
    for t in trials:
        if (s := record.state(t)) in counts:
            counts[s] += 1
    done = counts["complete"] + counts["stopped"] + counts["failed"]
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.datetime_complete and t.datetime_start and record.state(t) != record.REJECTED
    ]
    remaining = max(n_trials - done, 0)
    eta = sum(durations) / len(durations) * remaining / slots if durations else None
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = None
    if complete:
        b = study.best_trial
        best = {"trial": b.number, "value": b.value, "params": b.params}
    return {
        "n_trials": n_trials,
        **counts,
        "running_trials": [t.number for t in trials if t.state == TrialState.RUNNING],
        "best": best,
        "failures": failures(trials),
        "elapsed_s": round(elapsed, 1),
        "eta_s": None if eta is None else round(eta, 1),
    }


def write(sweep_dir: Path, state: dict) -> None:
    record.write_atomic(sweep_dir / record.STATE, OmegaConf.to_yaml(OmegaConf.create(state)))


def progress(state: dict) -> None:
    """One line, redrawn in place on a terminal, appended otherwise."""
    counts = ", ".join(f"{state[k]} {k}" for k in ("complete", "stopped", "failed", "rejected"))
    line = f"rlhp: {counts}, {state['running']} running of {state['n_trials']}"
    if best := state["best"]:
        line += f" | best {best['value']:.4g} (trial {best['trial']})"
    if populations := state.get("populations"):
        line += f" | {populations['jobs']} populations, {populations['members']} members"
    line += f" | {state['elapsed_s']:.0f}s"
    if state["eta_s"] is not None:
        line += f", eta {state['eta_s']:.0f}s"
    if sys.stderr.isatty():
        print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)
