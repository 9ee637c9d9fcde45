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
REDRAW_S = 5.0  # while trials run, state.yaml and the progress line follow their frames this often
CLOCK_SKEW_S = 60.0  # between the controller's clock and a node's file times


def cause(trial: FrozenTrial) -> str:
    """A failed trial's error, its last line."""
    lines = [ln for ln in str(trial.user_attrs.get("error", "")).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no error recorded"


def failures(trials: list[FrozenTrial]) -> dict[int, str]:
    """The latest FAILURES failed trials (by number) and why each failed."""
    failed = [t for t in trials if record.state(t) == record.FAILED]
    return {t.number: cause(t) for t in failed[-FAILURES:]}


def frames_in(metrics_csv: str) -> int:
    """Frames trained by the sessions of a metrics.csv: the sum of each session's last frame."""
    lines = metrics_csv.splitlines()
    if not lines or lines[0].split(",")[:2] != ["session", "frame"]:
        return 0
    last: dict[str, int] = {}
    for line in lines[1:]:
        session, frame = line.split(",", 2)[:2]
        last[session] = int(float(frame))
    return sum(last.values())


_TRAINED: dict[Path, tuple[tuple[int, int], int]] = {}  # metrics.csv -> (mtime, size), frames


def trained(run_dir: Path) -> int:
    """Frames a running trial has trained, from the metrics.csv it rewrites at each log point
    (read again only when it changed): the trial does no work for the progress line."""
    path = run_dir / record.METRICS
    try:
        st = path.stat()
        key = (st.st_mtime_ns, st.st_size)
        if (cached := _TRAINED.get(path)) is None or cached[0] != key:
            _TRAINED[path] = cached = key, frames_in(path.read_text())
    except (OSError, ValueError):  # not logged yet, or replaced while read: 0 until the next
        return 0
    return cached[1]


def started(run_dir: Path, since: float) -> bool:
    """Whether a launched trial's job has started since `since` (a queued SLURM job has not):
    Hydra writes the run's .hydra/config.yaml when its job starts."""
    try:
        return record.config_path(run_dir).stat().st_mtime >= since - CLOCK_SKEW_S
    except OSError:
        return False


def frames(trials: list[FrozenTrial], sweep_dir: Path) -> int:
    """Frames the search trained: its ended trials' (as recorded) and its running trials'."""
    ended = sum(int(t.user_attrs.get("frame", 0)) for t in trials if t.state != TrialState.RUNNING)
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    return ended + sum(trained(record.trial_dir(sweep_dir, n)) for n in running)


def summary(
    study: optuna.Study,
    n_trials: int,
    elapsed: float,
    slots: int,
    sweep_dir: Path | None = None,
    queued_since: float | None = None,
) -> dict:
    """state.yaml's content. With `sweep_dir`, the frames trained so far (`frames`); with
    `queued_since` as well (a launcher that queues jobs: SLURM), the launched trials whose job
    has not started since then are `queued`, not running."""
    trials = study.get_trials(deepcopy=False)
    counts = {s: 0 for s in record.STATES if s != record.WAITING}
    for t in trials:
        if (s := record.state(t)) in counts:
            counts[s] += 1
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    out: dict = {"n_trials": n_trials, **counts}
    if sweep_dir is not None:
        if queued_since is not None:
            queued = [
                n for n in running if not started(record.trial_dir(sweep_dir, n), queued_since)
            ]
            running = [n for n in running if n not in queued]
            out |= {"running": len(running), "queued": len(queued), "queued_trials": queued}
        out["frames"] = frames(trials, sweep_dir)
    done = counts["complete"] + counts["stopped"] + counts["failed"]
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.datetime_complete and t.datetime_start and record.state(t) != record.REJECTED
    ]
    eta = sum(durations) / len(durations) * max(n_trials - done, 0) / slots if durations else None
    best = None
    if any(t.state == TrialState.COMPLETE for t in trials):
        b = study.best_trial
        best = {"trial": b.number, "value": b.value, "params": b.params}
    return out | {
        "running_trials": running,
        "best": best,
        "failures": failures(trials),
        "elapsed_s": round(elapsed, 1),
        "eta_s": None if eta is None else round(eta, 1),
    }


def write(sweep_dir: Path, state: dict) -> None:
    record.write_atomic(sweep_dir / record.STATE, OmegaConf.to_yaml(OmegaConf.create(state)))


def human(n: float) -> str:
    """1234567 -> 1.23M, 12345 -> 12.3k."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def progress_line(state: dict) -> tuple[str, str]:
    """The progress line and what of it moves only when a trial starts or ends (its counts,
    best, populations)."""
    counts = ", ".join(f"{state[k]} {k}" for k in ("complete", "stopped", "failed", "rejected"))
    line = f"rlhp: {counts}, {state['running']} running"
    if "queued" in state:
        line += f", {state['queued']} queued"
    line += f" of {state['n_trials']}"
    if best := state["best"]:
        line += f" | best {best['value']:.4g} (trial {best['trial']})"
    if populations := state.get("populations"):
        line += f" | {populations['jobs']} populations, {populations['members']} members"
    moving = f" | {human(state['frames'])} frames" if "frames" in state else ""
    moving += f" | {state['elapsed_s']:.0f}s"
    if state["eta_s"] is not None:
        moving += f", eta {state['eta_s']:.0f}s"
    return line + moving, line


_SHOWN = [""]  # the steady part of the last line appended to a log


def progress(state: dict) -> None:
    """One line, redrawn in place on a terminal (frames and time move every REDRAW_S seconds),
    appended to a log only when a trial started or ended."""
    line, steady = progress_line(state)
    if sys.stderr.isatty():
        print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
    elif steady != _SHOWN[0]:
        _SHOWN[0] = steady
        print(line, file=sys.stderr, flush=True)
