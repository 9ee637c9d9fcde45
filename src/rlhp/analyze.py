"""What users look at after a search: `python -m rlhp.analyze SWEEP_DIR [--evaluator fanova]`.

It reads the sweep dir alone (the study's journal and the trial folders), so it works at the end
of a search, on one still running and on one that was killed. It writes into the sweep dir:

- experiment_df.csv: one row per trial, best first: trial, rank, state (complete,
  stopped@FRAME, failed, rejected, running, waiting), every searched parameter under its dotted
  name, objective (mean over sessions) and objective_std (std over sessions), total_reward_ma
  (SLM-Lab's name: the final one), sessions, final and max total_reward_ma, frames trained, wall
  seconds, and a note (constraint, error, prior). `--metric KEY --sort asc|desc` ranks on
  another column or on the last value of a metrics.csv column instead of the objective.
- multi_trial_graph.png, experiment_variable_graph.png, best_so_far.png, importance.png,
  best_history.png (`--history` prints it: the best configuration after each run, judged by the
  mean over its runs) and, after validation, validation.png.
- `--compare SWEEP_A SWEEP_B ...` puts searches side by side (compare.png, `--out`).
- importance.yaml: the searched parameters ranked by importance, each with its best value, and
  the top configurations.
- best.yaml (and top_k/rank2.yaml ...): the best configurations as complete configs;
  `python -m rlhp.train --config-dir SWEEP_DIR --config-name best` trains the best one.
- an experiment-level HParams summary at the sweep dir root, so `tensorboard --logdir SWEEP_DIR`
  lists every trial with the searched parameters' domains and its final metrics.
"""

import argparse
import logging
import math
import os
import shlex
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from omegaconf import OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from rlhp.sweep._history import best_history
from rlhp.sweep._space import decode
from rlhp.record import journal_path, open_storage

log = logging.getLogger("rlhp.analyze")

TOP = 5  # configurations in importance.yaml and in best.yaml + top_k/
EVALUATORS = ("ped_anova", "fanova")
GRAPHS = (
    "multi_trial_graph.png",
    "experiment_variable_graph.png",
    "best_so_far.png",
    "importance.png",
    "best_history.png",
)
TB_SUFFIX = ".rlhp_analyze"  # the root HParams events file; analyze replaces its own only
# the order of rows: complete trials by objective, then stopped (latest rung first), the rest
_GROUP = {"complete": 0, "stopped": 1, "running": 2, "waiting": 3, "failed": 4, "rejected": 5}


def write_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the new one (rlhp.log has the same, but imports torch)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class AnalysisError(Exception):
    """The sweep dir cannot be read (no study), or a step failed with strict=True."""


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
        return self.dir / str(number)

    @property
    def objective_label(self) -> str:
        what = {
            "final": "final total_reward_ma",
            "auc": "mean total_reward_ma over training",
            "eval": "final greedy eval_return",
        }
        return f"objective ({what.get(self.objective, self.objective)})"


# -- reading the sweep dir


def _hydra_cfg(sweep_dir: Path) -> Any:
    """The hydra node of one trial (storage, study name, cwd), or None before any trial ran."""
    for path in sorted(sweep_dir.glob("*/.hydra/hydra.yaml")):
        if path.parent.parent.name.isdigit():
            try:
                return OmegaConf.load(path).hydra
            except Exception:
                continue
    return None


def _storage(sweep_dir: Path, hydra_cfg: Any) -> Any:
    url = OmegaConf.select(hydra_cfg, "sweeper.storage", default=None) if hydra_cfg else None
    path = journal_path(url, sweep_dir)
    if path is not None and not path.is_file():
        raise AnalysisError(f"{sweep_dir} holds no study ({path.name} not found)")
    return open_storage(url, sweep_dir)


def load(sweep_dir: Path) -> Sweep:
    """The study and the trials' learning curves of a sweep dir (read only)."""
    sweep_dir = Path(sweep_dir).resolve()
    hydra_cfg = _hydra_cfg(sweep_dir)
    storage = _storage(sweep_dir, hydra_cfg)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    name = OmegaConf.select(hydra_cfg, "sweeper.study_name", default="rlhp") if hydra_cfg else None
    name = names[0] if len(names) == 1 else (name or "rlhp")
    if name not in names:
        raise AnalysisError(f"{sweep_dir}: no study {name!r} in the storage (found {names})")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    space: dict[str, BaseDistribution] = {}
    for t in trials:
        for k, dist in t.distributions.items():
            space.setdefault(k, dist)
    objective = "final"
    for t in trials:
        path = sweep_dir / str(t.number) / ".hydra" / "config.yaml"
        if path.is_file():
            objective = OmegaConf.load(path).get("objective", "final")
            break
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ordered = study.user_attrs.get("ordered") or {}
    space.update({k: CategoricalDistribution(v) for k, v in ordered.items() if k in space})
    sweep = Sweep(
        sweep_dir, study, trials, space, maximize, objective, hydra=hydra_cfg, ordered=ordered
    )
    for t in trials:
        path = sweep.trial_dir(t.number) / "metrics.csv"
        if path.is_file():
            try:
                sweep.curves[t.number] = pd.read_csv(path)
            except (pd.errors.EmptyDataError, pd.errors.ParserError):
                pass  # being rewritten: the next analysis reads it
    return sweep


def state(trial: FrozenTrial) -> str:
    """complete / stopped@FRAME / failed / rejected / running / waiting."""
    if "rejected" in trial.user_attrs:
        return "rejected"
    if trial.state == TrialState.PRUNED:
        at = trial.user_attrs.get("stopped_at", trial.last_step)
        return "stopped" if at is None else f"stopped@{at}"
    return {
        TrialState.COMPLETE: "complete",
        TrialState.FAIL: "failed",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
    }[trial.state]


def _score(trial: FrozenTrial) -> float | None:
    """The objective: a complete trial's value, a stopped one's value at its rung."""
    if trial.state == TrialState.COMPLETE:
        return trial.value
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        at = trial.user_attrs.get("stopped_at", trial.last_step)
        return trial.intermediate_values.get(at, trial.intermediate_values[trial.last_step])
    return None


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
    return "prior" if attrs.get("prior") else ""


def experiment_df(sweep: Sweep) -> pd.DataFrame:
    """One row per trial, best first (see the module doc for the columns)."""
    rows = []
    for t in sweep.trials:
        s = state(t)
        attrs = t.user_attrs
        row: dict[str, Any] = {"trial": t.number, "rank": None, "state": s}
        for name in sweep.space:
            row[name] = sweep.value(name, t.params[name]) if name in t.params else None
        row["objective"] = _score(t)
        row["objective_std"] = attrs.get("std")
        row["sessions"] = attrs.get("sessions")
        fallback = _from_curve(sweep.curves.get(t.number)) if "final" not in attrs else {}
        for key in ("final", "max", "frame", "wall_s"):
            row[key] = attrs.get(key, fallback.get(key))
        row["total_reward_ma"] = row["final"]
        if s == "running" and sweep.curves.get(t.number) is not None:
            row["sessions"] = int(sweep.curves[t.number]["session"].nunique())
        if t.datetime_start is not None and t.datetime_complete is not None and s != "rejected":
            row["duration_s"] = round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
        else:  # running: wall_s says how long it trained so far
            row["duration_s"] = None
        row["note"] = _note(t)
        rows.append(row)
    sign = -1.0 if sweep.maximize else 1.0

    def key(row: dict) -> tuple:
        group = _GROUP[row["state"].split("@")[0]]
        obj = row["objective"]
        obj = math.inf if obj is None or obj != obj else sign * obj
        at = -int(row["state"].split("@")[1]) if "@" in row["state"] else 0
        return (group, at, obj, row["trial"])

    rows.sort(key=key)
    for rank, row in enumerate((r for r in rows if r["objective"] is not None), start=1):
        row["rank"] = rank
    cols = ["trial", "rank", "state", *sweep.space]
    cols += ["objective", "objective_std", "total_reward_ma", "sessions", "final", "max"]
    cols += ["frame", "wall_s"]
    cols += ["duration_s", "note"]
    df = pd.DataFrame(rows, columns=cols)
    df["rank"] = df["rank"].astype("Int64")
    for col in ("sessions", "frame"):
        df[col] = pd.to_numeric(df[col]).astype("Int64")
    validation = sweep.dir / "validation.csv"
    if validation.is_file():  # rlhp.validate ran: its re-run scores beside the search's
        try:
            v = pd.read_csv(validation)[["trial", "validated_mean", "validated_std"]]
            df = df.merge(v, on="trial", how="left")
        except (KeyError, ValueError, pd.errors.ParserError) as e:
            log.warning("validation.csv not merged: %s", e)
    return df


def _csv_value(v: Any) -> Any:
    """Lists (e.g. hid_layers) as compact strings; everything else as is."""
    return str(v).replace(" ", "") if isinstance(v, list | tuple | dict) else v


def write_csv(df: pd.DataFrame, path: Path) -> None:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(_csv_value)
    write_atomic(path, out.to_csv(index=False))


# -- importance


def importance(sweep: Sweep, evaluator: str = "ped_anova") -> dict:
    """Every searched parameter ranked by importance, with its best value; a note says why a
    ranking could not be computed (too few complete trials, nothing varies)."""
    if evaluator not in EVALUATORS:
        raise AnalysisError(f"evaluator must be one of {EVALUATORS}, got {evaluator!r}")
    complete = [
        t
        for t in sweep.trials
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
    best = _best(complete, sweep.maximize)
    out: dict[str, Any] = {
        "evaluator": evaluator,
        "objective": sweep.objective,
        "direction": "maximize" if sweep.maximize else "minimize",
        "complete_trials": len(complete),
        "note": None,
        "warnings": [],
        "importance": [],
        "top_configurations": [],
    }
    varied = [
        name
        for name in sweep.space
        if len({repr(t.params.get(name)) for t in complete if name in t.params}) > 1
    ]
    constant = [name for name in sweep.space if name not in varied]
    scores: dict[str, float] = {}
    fallback = None
    if len(complete) < 2:
        out["note"] = (
            f"importance needs at least 2 complete trials with varied parameters; "
            f"the study has {len(complete)} complete"
        )
    elif not varied:
        out["note"] = "no searched parameter varies across the complete trials"
    else:
        ev = None
        if evaluator == "fanova":
            try:  # optuna's fANOVA needs scikit-learn, which rlhp does not install
                ev = optuna.importance.FanovaImportanceEvaluator(seed=0)
                # fANOVA assesses parameters present in every complete trial
                varied = [n for n in varied if all(n in t.params for t in complete)]
            except ImportError:
                out["evaluator"] = "ped_anova"
                fallback = "fanova needs scikit-learn (pip install scikit-learn): used ped_anova"
        if ev is None:
            ev = optuna.importance.PedAnovaImportanceEvaluator()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                scores = optuna.importance.get_param_importances(
                    sweep.study, evaluator=ev, params=varied
                )
            out["warnings"] = sorted({str(w.message) for w in caught})
        except Exception as e:  # a sampler-specific corner: keep the rest of the analysis
            out["note"] = f"{evaluator} failed: {type(e).__name__}: {e}"
        if scores and len(complete) < 10:
            out["note"] = f"only {len(complete)} complete trials: a rough ranking"
        if fallback:
            out["note"] = "; ".join(filter(None, [fallback, out["note"]]))
    ranked = sorted(scores, key=lambda n: -scores[n])
    for name in ranked + [n for n in sweep.space if n not in scores]:
        entry: dict[str, Any] = {
            "param": name,
            "importance": float(scores[name]) if name in scores else None,
        }
        if name not in scores:
            entry["why"] = (
                "constant across the complete trials"
                if len(complete) >= 2 and name in constant
                else out["note"] or "not assessed"
            )
        known = best is not None and name in best.params
        entry["best_value"] = _plain(sweep.value(name, best.params[name])) if known else None
        entry["log_scale"] = bool(getattr(sweep.space[name], "log", False))
        out["importance"].append(entry)
    return out


def _best(trials: list[FrozenTrial], maximize: bool) -> FrozenTrial | None:
    if not trials:
        return None
    return (max if maximize else min)(trials, key=lambda t: t.value)


def _plain(v: Any) -> Any:
    """A value YAML can write: numpy scalars to Python, tuples to lists."""
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# -- configurations that train with one command


def train_command(sweep: Sweep, name: str, folder: Path | None = None) -> str:
    folder = folder or sweep.dir
    return f"python -m rlhp.train --config-dir {shlex.quote(str(folder))} --config-name {name}"


def app_args(sweep: Sweep) -> list[str]:
    """The --config-dir / --config-name the search ran with: its trials' overrides need them."""
    out: list[str] = []
    if sweep.hydra is None:
        return out
    for src in OmegaConf.select(sweep.hydra, "runtime.config_sources", default=None) or []:
        if src.get("provider") == "command-line" and src.get("schema") == "file":
            out += ["--config-dir", str(src.path)]
    name = OmegaConf.select(sweep.hydra, "job.config_name", default=None)
    if name and name != "config":
        out += ["--config-name", str(name)]
    return out


def trial_overrides(sweep: Sweep, number: int) -> list[str] | None:
    """The trial's own overrides (.hydra/overrides.yaml), None if it has none."""
    path = sweep.trial_dir(number) / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    return [str(o) for o in OmegaConf.to_container(OmegaConf.load(path))]


def override_command(sweep: Sweep, number: int) -> str | None:
    """The trial's own command line (its overrides on the app's config), if it has one."""
    overrides = trial_overrides(sweep, number)
    if overrides is None:
        return None
    return " ".join(["python -m rlhp.train", *map(shlex.quote, app_args(sweep) + overrides)])


def config_text(sweep: Sweep, row: pd.Series, header: list[str]) -> str | None:
    """The trial's composed config (minus hydra's node) with a small hydra node of its own, so
    a run writes where the app's runs do; None if the trial folder has no config."""
    number = int(row["trial"])
    path = sweep.trial_dir(number) / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    if "hydra" in cfg:
        del cfg["hydra"]
    run_dir = "runs/${now:%Y-%m-%d_%H-%M-%S}_${algo.name}_${env.name}"
    if sweep.hydra is not None and "run" in sweep.hydra:
        run_dir = OmegaConf.to_container(sweep.hydra.run, resolve=False).get("dir") or run_dir
    cfg.hydra = {"run": {"dir": run_dir}, "job": {"chdir": False}}
    body = OmegaConf.to_yaml(cfg)
    return "".join(f"# {line}\n" if line else "#\n" for line in header) + body


def write_configs(sweep: Sweep, df: pd.DataFrame, top: int = TOP) -> list[dict]:
    """best.yaml and top_k/rank2.yaml ... for the best `top` complete trials."""
    top_dir = sweep.dir / "top_k"
    for old in top_dir.glob("rank*.yaml"):
        old.unlink()
    written = []
    complete = df[df["state"] == "complete"].head(top)
    for i, (_, row) in enumerate(complete.iterrows(), start=1):
        number = int(row["trial"])
        if i == 1:
            name, folder = "best", sweep.dir
        else:
            name, folder = f"rank{i}", top_dir
        cmd = train_command(sweep, name, folder)
        std = row["objective_std"]
        header = [
            f"rlhp: rank {i} of the search in {sweep.dir}: trial {number}",
            f"{sweep.objective_label} = {row['objective']:.6g}"
            + ("" if pd.isna(std) else f" (std {std:.3g} over {row['sessions']} session(s))"),
            "train it:",
            f"  {cmd}",
        ]
        if (alt := override_command(sweep, number)) is not None:
            header += ["or, with the search's own overrides on the app's config:", f"  {alt}"]
        text = config_text(sweep, row, header)
        if text is None:
            log.warning("trial %d has no .hydra/config.yaml: no %s.yaml", number, name)
            continue
        folder.mkdir(exist_ok=True)
        write_atomic(folder / f"{name}.yaml", text)
        written.append({"rank": i, "trial": number, "file": str(folder / f"{name}.yaml")})
        written[-1]["command"] = cmd
    if not written and (sweep.dir / "best.yaml").exists():
        (sweep.dir / "best.yaml").unlink()  # stale: no complete trial now (a new study)
    return written


def _top_configurations(df: pd.DataFrame, space: dict, configs: list[dict]) -> list[dict]:
    files = {c["trial"]: c["file"] for c in configs}
    out = []
    for _, row in df[df["state"] == "complete"].head(TOP).iterrows():
        number = int(row["trial"])
        entry = {
            "rank": int(row["rank"]),
            "trial": number,
            "objective": _plain(row["objective"]),
            "objective_std": None
            if pd.isna(row["objective_std"])
            else _plain(row["objective_std"]),
            "params": {name: _plain(row[name]) for name in space},
        }
        if number in files:
            entry["config"] = files[number]
        out.append(entry)
    return out


# -- TensorBoard


def _session_infos(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """hparams of every HParams session under the sweep dir (run path -> name -> value) and
    the metric tags those runs log, read with TensorBoard's own event loader and metadata."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    runs: dict[str, dict[str, Any]] = {}
    for path in sorted(sweep_dir.glob("**/tb/hparams/events.out.tfevents.*")):
        run = str(path.parent.relative_to(sweep_dir))
        info = runs.setdefault(run, {"hparams": {}, "metrics": set()})
        try:
            for event in EventFileLoader(str(path)).Load():
                for value in event.summary.value:
                    if value.tag == metadata.SESSION_START_INFO_TAG:
                        content = value.metadata.plugin_data.content
                        start = metadata.parse_session_start_info_plugin_data(content)
                        for name, v in start.hparams.items():
                            info["hparams"][name] = v
                    elif not value.tag.startswith("_hparams_/"):
                        info["metrics"].add(value.tag)
        except Exception as e:  # a file being written: the next analysis reads it
            log.debug("skipping %s: %s", path, e)
    return runs


def _tb_value(v: Any) -> tuple[str, Any]:
    """(kind, value) of a searched value as a trial logs it (torch's add_hparams)."""
    v = decode(v)
    if isinstance(v, bool | int | float):
        return "number", float(v)
    if isinstance(v, str):
        return "string", v
    return "string", str(v)


def write_tensorboard(sweep: Sweep) -> dict[str, Any]:
    """One experiment-level HParams summary at the sweep dir root: every searched parameter with
    its domain (interval or choices, as the trials log them) and the trials' final metrics."""
    from google.protobuf import struct_pb2
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    runs = _session_infos(sweep.dir)
    logged: dict[str, list] = {}
    metrics: set[str] = set()
    for info in runs.values():
        metrics |= info["metrics"]
        for name, v in info["hparams"].items():
            logged.setdefault(name, []).append(v)
    infos, missing = [], []
    for name, dist in sweep.space.items():
        values = logged.get(name)
        if not values:
            missing.append(name)
            continue
        kinds = {v.WhichOneof("kind") for v in values}
        info = api_pb2.HParamInfo(name=name, display_name=name)
        if isinstance(dist, CategoricalDistribution):
            seen = {
                ("number" if v.WhichOneof("kind") == "number_value" else "string"): set()
                for v in values
            }
            for v in values:
                if v.WhichOneof("kind") == "number_value":
                    seen["number"].add(v.number_value)
                elif v.WhichOneof("kind") == "string_value":
                    seen["string"].add(v.string_value)
            for choice in dist.choices:
                kind, value = _tb_value(choice)
                if kind in seen or not seen:
                    seen.setdefault(kind, set()).add(value)
            if "string" in seen and "number" not in seen:
                info.type = api_pb2.DATA_TYPE_STRING
                items = [struct_pb2.Value(string_value=s) for s in sorted(seen["string"])]
            elif "number" in seen and "string" not in seen:
                info.type = api_pb2.DATA_TYPE_FLOAT64
                items = [struct_pb2.Value(number_value=n) for n in sorted(seen["number"])]
            else:  # mixed kinds: no domain, so no session is filtered out
                items = None
            if items is not None:
                info.domain_discrete.CopyFrom(struct_pb2.ListValue(values=items))
        elif isinstance(dist, FloatDistribution | IntDistribution) and kinds == {"number_value"}:
            info.type = api_pb2.DATA_TYPE_FLOAT64
            low = min([float(dist.low)] + [v.number_value for v in values])
            high = max([float(dist.high)] + [v.number_value for v in values])
            info.domain_interval.CopyFrom(api_pb2.Interval(min_value=low, max_value=high))
        infos.append(info)
    # logged hparams that differ between runs (e.g. seed, with validation runs) come after
    for name, values in logged.items():
        if name in sweep.space or len({v.SerializeToString() for v in values}) < 2:
            continue
        kinds = {v.WhichOneof("kind") for v in values}
        kind = api_pb2.DATA_TYPE_FLOAT64 if kinds == {"number_value"} else api_pb2.DATA_TYPE_STRING
        infos.append(api_pb2.HParamInfo(name=name, display_name=name, type=kind))
    metrics = metrics or {"hparams/objective", "hparams/final_total_reward_ma"}
    metric_infos = [
        api_pb2.MetricInfo(
            name=api_pb2.MetricName(tag=tag, group=""),
            display_name=tag.removeprefix("hparams/"),
        )
        for tag in sorted(metrics, key=lambda t: (t != "hparams/objective", t))
    ]
    complete = sum(1 for t in sweep.trials if t.state == TrialState.COMPLETE)
    experiment = api_pb2.Experiment(
        name=sweep.dir.name,
        description=(
            f"rlhp search in {sweep.dir}: {len(sweep.trials)} trials, {complete} complete. "
            f"Objective: {sweep.objective_label}, "
            f"{'maximize' if sweep.maximize else 'minimize'}. See experiment_df.csv."
        ),
        time_created_secs=time.time(),
        hparam_infos=infos,
        metric_infos=metric_infos,
    )
    content = plugin_data_pb2.HParamsPluginData(experiment=experiment, version=0)
    smd = metadata.create_summary_metadata(content)
    summary = summary_pb2.Summary(
        value=[
            summary_pb2.Summary.Value(
                tag=metadata.EXPERIMENT_TAG, metadata=smd, tensor=metadata.NULL_TENSOR
            )
        ]
    )
    # TensorBoard takes the experiment of the first run that has one (the trials' own
    # add_hparams write one each); the data server orders runs by their first event's time, so
    # this file's events are dated just before the study's first trial.
    starts = [t.datetime_start.timestamp() for t in sweep.trials if t.datetime_start]
    wall = min(starts) - 1.0 if starts else time.time()
    events = [
        event_pb2.Event(wall_time=wall, file_version="brain.Event:2"),
        event_pb2.Event(wall_time=wall, summary=summary),
    ]
    name = f"events.out.tfevents.{int(wall):010d}.rlhp{TB_SUFFIX}"
    tmp = sweep.dir / f".{name}.tmp"
    with open(tmp, "wb") as f:
        writer = RecordWriter(f)
        for event in events:
            writer.write(event.SerializeToString())
        writer.flush()
    for old in sweep.dir.glob(f"events.out.tfevents.*{TB_SUFFIX}"):
        old.unlink()
    tmp.replace(sweep.dir / name)
    return {"sessions": len(runs), "hparams": [i.name for i in infos], "not_logged": missing}


# -- ranking on another metric, best-history, comparison


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
    group = df["state"].str.split("@").str[0].map(_GROUP).where(df[metric].notna(), 9)
    value = df[metric] if ascending else -df[metric]
    df = df.assign(_g=group, _v=value).sort_values(["_g", "_v", "trial"])
    df = df.drop(columns=["_g", "_v"]).reset_index(drop=True)
    ranked = df[metric].notna() & df["state"].str.match(r"complete|stopped")
    df["rank"] = ranked.cumsum().where(ranked).astype("Int64")
    return df


def history(sweep: Sweep) -> pd.DataFrame:
    """Best-history (rlhp.sweep._history): one row per completed run."""
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
            **{k: _plain(sweep.value(k, v)) for k, v in s.params.items()},
        }
        for s in steps
    ]
    cols = ["run", "trial", "value", "best", "runs", "estimate", "held", *sweep.space]
    return pd.DataFrame(rows, columns=cols)


def compare(sweep_dirs: list[Path], out: Path) -> pd.DataFrame:
    """Searches side by side: compare.png and one summary row per search."""
    from rlhp import _plots

    sweeps = [load(Path(d)) for d in sweep_dirs]
    rows = []
    for sweep in sweeps:
        df = experiment_df(sweep)
        complete = df[df["state"] == "complete"]
        rows.append(
            {
                "search": str(sweep.dir),
                "trials": len(df),
                "complete": len(complete),
                "best": complete["objective"].iloc[0] if len(complete) else None,
                "frames": int(df["frame"].fillna(0).sum()),
            }
        )
    _plots.compare_graph(sweeps, out)
    return pd.DataFrame(rows)


def validation_graph(sweep_dir: Path) -> None:
    """validation.png of a validated search (rlhp.validate wrote validation.csv)."""
    from rlhp import _plots

    sweep = load(Path(sweep_dir))
    _plots.validation_graph(sweep, pd.read_csv(sweep.dir / "validation.csv"))


# -- the whole analysis


def analyze(
    sweep_dir: Path,
    evaluator: str = "ped_anova",
    *,
    strict: bool = False,
    metric: str | None = None,
    ascending: bool | None = None,
) -> None:
    """Write every analysis output into sweep_dir (see the module doc) and print a summary.

    Works on a finished, running or killed search. A step that fails is logged and the others
    still run; strict=True raises AnalysisError at the end instead (tests, the CLI's exit code).
    A sweep dir without a study raises AnalysisError, and so does an unknown `metric`.
    """
    sweep = load(Path(sweep_dir))
    failed: list[str] = []

    def step(name: str, fn, *args):
        try:
            return fn(*args)
        except Exception as e:
            failed.append(f"{name}: {type(e).__name__}: {e}")
            log.warning("rlhp.analyze: %s failed:\n%s", name, traceback.format_exc())
            return None

    from rlhp import _plots

    df = experiment_df(sweep)
    if metric is not None:
        df = rank_by(sweep, df, metric, not sweep.maximize if ascending is None else ascending)
    step("experiment_df.csv", write_csv, df, sweep.dir / "experiment_df.csv")
    configs = step("best.yaml", write_configs, sweep, df) or []
    imp = step("importance", importance, sweep, evaluator)
    if imp is not None:
        imp["top_configurations"] = _top_configurations(df, sweep.space, configs)
        text = yaml.safe_dump(_plain(imp), sort_keys=False, width=100)
        step("importance.yaml", write_atomic, sweep.dir / "importance.yaml", text)
    step("multi_trial_graph.png", _plots.multi_trial_graph, sweep, df)
    step("experiment_variable_graph.png", _plots.variable_graph, sweep, df)
    step("best_so_far.png", _plots.best_so_far, sweep)
    step("importance.png", _plots.importance_graph, sweep, imp)
    steps = best_history(sweep.trials, sweep.maximize)
    step("best_history.png", _plots.best_history_graph, sweep, steps)
    if (sweep.dir / "validation.csv").is_file():
        step("validation.png", validation_graph, sweep.dir)
    tb = step("tensorboard", write_tensorboard, sweep)
    _print_summary(sweep, df, configs, imp, tb)
    if failed and strict:
        raise AnalysisError("; ".join(failed))


def _print_summary(sweep: Sweep, df, configs, imp, tb) -> None:
    counts = df["state"].str.split("@").str[0].value_counts()
    parts = [f"{counts.get(s, 0)} {s}" for s in _GROUP if counts.get(s, 0)]
    print(f"rlhp.analyze: {sweep.dir}: {len(df)} trials ({', '.join(parts)})")
    if configs:
        best = df[df["trial"] == configs[0]["trial"]].iloc[0]
        print(f"  best: trial {configs[0]['trial']}, objective {best['objective']:.6g}")
        print(f"  train the best configuration: {configs[0]['command']}")
    elif (df["state"] == "complete").any():
        print("  no best.yaml: the best trials' folders hold no .hydra/config.yaml")
    else:
        print("  no complete trial yet: no best.yaml")
    if imp is not None:
        ranked = [e["param"] for e in imp["importance"] if e["importance"] is not None][:3]
        if ranked:
            print(f"  most important ({imp['evaluator']}): {', '.join(ranked)}")
        if imp["note"]:
            print(f"  importance: {imp['note']}")
    if tb and tb["sessions"] and tb["not_logged"]:
        print(f"  TensorBoard: trials do not log {', '.join(tb['not_logged'])}")
    outputs = ["experiment_df.csv", "importance.yaml", *GRAPHS]
    print(f"  wrote {', '.join(outputs)}; tensorboard --logdir {shlex.quote(str(sweep.dir))}")


def _args(argv: list[str]) -> list[str]:
    """`key=value` arguments (Hydra style) as `--key=value`."""
    return [f"--{a}" if "=" in a and not a.startswith("-") else a for a in argv]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rlhp.analyze", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("sweep_dir", type=Path, nargs="+")
    parser.add_argument("--evaluator", choices=EVALUATORS, default="ped_anova")
    parser.add_argument("--history", action="store_true", help="print the best-history")
    parser.add_argument("--compare", action="store_true", help="put several searches side by side")
    parser.add_argument("--out", type=Path, default=Path("compare.png"), help="of --compare")
    parser.add_argument("--metric", help="rank on this column or metrics.csv key")
    parser.add_argument("--sort", choices=("asc", "desc"), help="default: the study's direction")
    args = parser.parse_args(_args(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.compare:
            table = compare(args.sweep_dir, args.out)
            print(table.to_string(index=False))
            print(f"rlhp.analyze: wrote {args.out}")
            return 0
        if len(args.sweep_dir) > 1:
            raise AnalysisError("several sweep dirs need --compare")
        ascending = None if args.sort is None else args.sort == "asc"
        analyze(
            args.sweep_dir[0], args.evaluator, strict=True, metric=args.metric, ascending=ascending
        )
        if args.history:
            table = history(load(args.sweep_dir[0]))
            print(table.to_string(index=False) if len(table) else "no complete trial yet")
    except AnalysisError as e:
        print(f"rlhp.analyze: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
