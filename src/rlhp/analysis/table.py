"""The table of a search: experiment_df.csv, one row per trial, best first.

Columns: trial, rank, state (complete, stopped@FRAME, failed, rejected, running, waiting), every
searched parameter under its dotted name, objective (mean over sessions) and objective_std (std
over sessions), total_reward_ma (SLM-Lab's name: the final one), sessions, final and max
total_reward_ma, frames trained, wall seconds, duration, a note (constraint, error, prior) and,
after validation, the validated mean and std.
"""

import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial

from rlhp import record
from rlhp.analysis.export import plain
from rlhp.analysis.history import best_history
from rlhp.record import AnalysisError, Sweep

log = logging.getLogger("rlhp.analyze")

# the order of rows: complete trials by objective, then stopped (latest rung first), the rest
GROUP = {s: i for i, s in enumerate(record.STATES)}
_COLUMNS = ["objective", "objective_std", "total_reward_ma", "sessions", "final", "max"]
_COLUMNS += ["frame", "wall_s", "duration_s", "note"]


def _from_curve(curve: pd.DataFrame | None) -> dict[str, float]:
    """final / max / frame / wall_s of a trial that has not reported (running, failed)."""
    if curve is None or curve.empty:
        return {}
    last = curve.sort_values("frame").groupby("session").tail(1)
    ma = curve["total_reward_ma"].dropna()
    return {
        "final": float(last["total_reward_ma"].mean()),
        "max": float(ma.max()) if len(ma) else math.nan,
        "frame": int(last["frame"].sum()),
        "wall_s": float(last["wall_s"].sum()) if "wall_s" in last else math.nan,
    }


def _note(trial: FrozenTrial) -> str:
    attrs = trial.user_attrs
    if attrs.get("incomplete"):
        return "never launched: the search stopped while sampling it"
    if "rejected" in attrs:
        return f"constraint: {attrs['rejected']}"
    if "error" in attrs:
        lines = [ln for ln in str(attrs["error"]).splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "error"
    notes = ["prior"] if attrs.get("prior") else []
    if retries := attrs.get("retries"):
        notes.append(f"ran again {retries}x from its checkpoint after its process died")
    return "; ".join(notes)


def _row(sweep: Sweep, t: FrozenTrial) -> dict[str, Any]:
    attrs = record.recorded(t.user_attrs)
    state = record.label(t)
    row: dict[str, Any] = {"trial": t.number, "rank": None, "state": state}
    for name in sweep.space:
        row[name] = sweep.value(name, t.params[name]) if name in t.params else None
    row["objective"] = record.score(t)
    row["objective_std"] = attrs.get("objective_std")
    row["sessions"] = attrs.get("sessions")
    fallback = _from_curve(sweep.curves.get(t.number)) if "final" not in attrs else {}
    for key in ("final", "max", "frame", "wall_s"):
        row[key] = attrs.get(key, fallback.get(key))
    row["total_reward_ma"] = row["final"]
    if state == record.RUNNING and sweep.curves.get(t.number) is not None:
        row["sessions"] = int(sweep.curves[t.number]["session"].nunique())
    row["duration_s"] = None  # running: wall_s says how long it trained so far
    if t.datetime_start and t.datetime_complete and state != record.REJECTED:
        row["duration_s"] = round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
    row["note"] = _note(t)
    return row


def _order(row: dict[str, Any], maximize: bool) -> tuple:
    """Rows sort by state group, then stopped ones by their rung (latest first), then by
    objective (best first), then by trial number."""
    group = GROUP[row["state"].split("@")[0]]
    obj = row["objective"]
    obj = math.inf if obj is None or obj != obj else (-obj if maximize else obj)
    at = -int(row["state"].split("@")[1]) if "@" in row["state"] else 0
    return (group, at, obj, row["trial"])


def experiment_df(sweep: Sweep) -> pd.DataFrame:
    """One row per trial, best first (see the module doc for the columns); validated scores
    beside the search's when the search was validated."""
    rows = sorted((_row(sweep, t) for t in sweep.trials), key=lambda r: _order(r, sweep.maximize))
    for rank, row in enumerate((r for r in rows if r["objective"] is not None), start=1):
        row["rank"] = rank
    df = pd.DataFrame(rows, columns=["trial", "rank", "state", *sweep.space, *_COLUMNS])
    df["rank"] = df["rank"].astype("Int64")
    for col in ("sessions", "frame"):
        df[col] = pd.to_numeric(df[col]).astype("Int64")
    validation = record.validation_table(sweep.dir)
    if validation is not None:
        try:
            v = validation[["trial", "validated_mean", "validated_std"]]
            df = df.merge(v, on="trial", how="left")
        except KeyError as e:
            log.warning("%s not merged: %s", record.VALIDATION_CSV, e)
    return df


def _csv_value(v: Any) -> Any:
    """Lists (e.g. hid_layers) as compact strings; everything else as is."""
    return str(v).replace(" ", "") if isinstance(v, list | tuple | dict) else v


def write_csv(df: pd.DataFrame, path: Path) -> None:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(_csv_value)
    record.write_atomic(path, out.to_csv(index=False))


def write_table(sweep: Sweep, df: pd.DataFrame | None = None) -> pd.DataFrame:
    """experiment_df.csv (`df`, or the table as it stands); returns the table."""
    df = experiment_df(sweep) if df is None else df
    write_csv(df, sweep.dir / "experiment_df.csv")
    return df


def rank_by(sweep: Sweep, df: pd.DataFrame, metric: str, ascending: bool) -> pd.DataFrame:
    """The table ranked on `metric`: one of its columns, or the last value (mean over
    sessions) of a metrics.csv column; complete trials first, then stopped ones."""
    df = df.copy()
    if metric not in df.columns:
        values = {}
        for number, curve in sweep.curves.items():
            if metric in curve and curve[metric].notna().any():
                last = curve.dropna(subset=[metric]).sort_values("frame").groupby("session")
                values[number] = float(last.tail(1)[metric].mean())
        if not values:
            known = sorted(set(df.columns) | {c for v in sweep.curves.values() for c in v})
            raise AnalysisError(f"no trial recorded {metric!r}; known: {', '.join(known)}")
        df[metric] = df["trial"].map(values)
    if not pd.api.types.is_numeric_dtype(df[metric]):
        raise AnalysisError(f"{metric!r} is not a number")
    group = df["state"].str.split("@").str[0].map(GROUP).where(df[metric].notna(), 9)
    value = df[metric] if ascending else -df[metric]
    df = df.assign(_g=group, _v=value).sort_values(["_g", "_v", "trial"])
    df = df.drop(columns=["_g", "_v"]).reset_index(drop=True)
    ranked = df[metric].notna() & df["state"].str.match(r"complete|stopped")
    df["rank"] = ranked.cumsum().where(ranked).astype("Int64")
    return df


def history_table(sweep: Sweep) -> pd.DataFrame:
    """Best-history (rlhp.analysis.history): one row per completed run."""
    steps = best_history(sweep.trials, sweep.maximize)
    rows = [
        {
            "run": s.run,
            "trial": s.trial,
            "value": s.value,
            "best": s.best,
            "runs": s.runs,
            "estimate": s.estimate,
            "held": s.held,
            **{k: plain(sweep.value(k, v)) for k, v in s.params.items()},
        }
        for s in steps
    ]
    cols = ["run", "trial", "value", "best", "runs", "estimate", "held", *sweep.space]
    return pd.DataFrame(rows, columns=cols)
