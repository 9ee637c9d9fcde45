"""The sweep-level HParams experiment: `tensorboard --logdir SWEEP_DIR` lists every trial (one row
per trial, its sessions grouped; rlhp.tb) with the searched parameters' domains, every other
logged value and the trials' final metrics.

TensorBoard's HParams dashboard shows an experiment's first five hparams as columns; the rest
are listed, unticked, for the user to add. Its plugin orders them by `differs` (true first),
then by name. `differs` is set on the five most important searched parameters (importance.yaml's
ranking, then the space's order), so they are the ones shown; the other searched parameters and
the fixed config values come after, hidden (with fewer than five searched, the first fixed ones
by name fill the five columns).

A trial ASHA stopped has the metric `stopped_at` (the frame), in an events file of the
analysis' own in each of its sessions' runs. Validation re-runs (`validation/trialN/session<s>`)
keep their scalars but not their HParams session info: they are no trial's row.
"""

import io
import logging
import time
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import struct_pb2
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from rlhp import record
from rlhp.record import Sweep, write_atomic
from rlhp.tb import HPARAMS_SUFFIX, METRICS

log = logging.getLogger("rlhp.analyze")
TB_SUFFIX = ".rlhp_analyze"  # the experiment's events file; analyze replaces its own only
STOPPED_SUFFIX = ".rlhp_stopped"  # a stopped trial's session: its stopped_at metric
STOPPED_AT = "hparams/stopped_at"
SHOWN = 5  # hparams columns the dashboard shows
Values = list[struct_pb2.Value]
_TYPES = {
    "number_value": api_pb2.DATA_TYPE_FLOAT64,
    "string_value": api_pb2.DATA_TYPE_STRING,
    "bool_value": api_pb2.DATA_TYPE_BOOL,
}


def _logged(sweep_dir: Path) -> tuple[dict[str, Values], set[str], list[Path]]:
    """The hparams values every session under the sweep dir logged (name -> values), their
    metric tags and the sessions' runs, read with TensorBoard's own event loader and metadata."""
    values: dict[str, Values] = {}
    metrics: set[str] = set()
    runs: set[Path] = set()
    for path in sorted(sweep_dir.glob(f"**/events.out.tfevents.*{HPARAMS_SUFFIX}")):
        try:
            for event in EventFileLoader(str(path)).Load():
                for value in event.summary.value:
                    if value.tag == metadata.SESSION_START_INFO_TAG:
                        content = value.metadata.plugin_data.content
                        start = metadata.parse_session_start_info_plugin_data(content)
                        for name, v in start.hparams.items():
                            values.setdefault(name, []).append(v)
                        runs.add(path.parent)
                    elif value.metadata.plugin_data.plugin_name != metadata.PLUGIN_NAME:
                        metrics.add(value.tag)
        except Exception as e:  # a file being written: the next analysis reads it
            log.debug("skipping %s: %s", path, e)
    return values, metrics, sorted(runs)


def _session_info(value: summary_pb2.Summary.Value) -> bool:
    return value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME


def hide_validation_sessions(sweep_dir: Path) -> int:
    """Rewrite the HParams files of validation re-runs without their session info (their
    scalars stay): the dashboard's rows are the search's trials. How many files changed."""
    changed = 0
    root = record.validation_dir(sweep_dir, 0).parent
    for path in sorted(root.glob(f"*/*/events.out.tfevents.*{HPARAMS_SUFFIX}")):
        try:
            events = list(EventFileLoader(str(path)).Load())
        except Exception as e:  # a file being written: the next analysis reads it
            log.debug("skipping %s: %s", path, e)
            continue
        if not any(_session_info(v) for e in events for v in e.summary.value):
            continue
        for event in events:
            kept = [v for v in event.summary.value if not _session_info(v)]
            event.summary.ClearField("value")
            event.summary.value.extend(kept)
        records = io.BytesIO()
        writer = RecordWriter(records)
        for event in events:
            if event.HasField("file_version") or event.summary.value:
                writer.write(event.SerializeToString())
        write_atomic(path, records.getvalue())
        changed += 1
    return changed


def _pb(v: Any) -> struct_pb2.Value:
    """A value as a session logs it (rlhp.tb.session_start)."""
    if isinstance(v, bool):
        return struct_pb2.Value(bool_value=v)
    if isinstance(v, int | float):
        return struct_pb2.Value(number_value=float(v))
    return struct_pb2.Value(string_value=v if isinstance(v, str) else str(v))


def _with_domain(info: api_pb2.HParamInfo, values: Values, interval: bool) -> None:
    """Sets `info`'s type and domain to fit `values`: numbers as an interval (when `interval`),
    else their distinct values; values of mixed kinds are strings without a domain, so that no
    session is filtered out."""
    kinds = {v.WhichOneof("kind") for v in values}
    if len(kinds) != 1:
        info.type = api_pb2.DATA_TYPE_STRING
    elif kinds == {"number_value"} and interval:
        info.type = api_pb2.DATA_TYPE_FLOAT64
        numbers = [v.number_value for v in values]
        info.domain_interval.min_value, info.domain_interval.max_value = min(numbers), max(numbers)
    else:
        [kind] = kinds
        info.type = _TYPES[kind]
        distinct = {v.SerializeToString(): v for v in values}.values()
        ordered = sorted(distinct, key=lambda v: getattr(v, kind))
        info.domain_discrete.CopyFrom(struct_pb2.ListValue(values=ordered))


def ranked(space: list[str], importance: list[dict]) -> list[str]:
    """The searched parameters, most important first (importance.yaml's entries with a score,
    in its order), then the others in the space's order."""
    scored = [e["param"] for e in importance if e.get("importance") is not None]
    first = [name for name in scored if name in space]
    return first + [name for name in space if name not in first]


def _importance(sweep_dir: Path) -> list[dict]:
    """importance.yaml's ranking (rlhp.analyze writes it before the HParams experiment)."""
    try:
        return list(yaml.safe_load((sweep_dir / "importance.yaml").read_text())["importance"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return []


def _searched(
    sweep: Sweep, name: str, dist: BaseDistribution, logged: Values, shown: bool
) -> api_pb2.HParamInfo:
    """A searched parameter: a column shown (`differs`) when `shown`, its domain the search
    space and what the trials logged."""
    info = api_pb2.HParamInfo(name=name, display_name=name, differs=shown)
    if isinstance(dist, CategoricalDistribution):
        choices = [_pb(record.decode(c)) for c in dist.choices]  # ordered: values already
        _with_domain(info, choices + logged, interval=False)
    elif isinstance(dist, FloatDistribution | IntDistribution):
        bounds = [_pb(float(dist.low)), _pb(float(dist.high))]
        _with_domain(info, bounds + logged, interval=True)
    return info


def _fixed(name: str, logged: Values) -> api_pb2.HParamInfo:
    """A logged value that was not searched: listed, not shown by default."""
    info = api_pb2.HParamInfo(name=name, display_name=name, differs=False)
    _with_domain(info, logged, interval=True)
    return info


def _experiment(
    sweep: Sweep, infos: list[api_pb2.HParamInfo], metrics: set[str]
) -> api_pb2.Experiment:
    """The experiment: `infos`, then the metrics the sessions logged (the objective first),
    then `stopped_at` when a trial was stopped."""
    tags = sorted(metrics or set(METRICS), key=lambda t: (t != METRICS[0], t))
    if any(record.state(t) == record.STOPPED for t in sweep.trials):
        tags.append(STOPPED_AT)
    metric_infos = [
        api_pb2.MetricInfo(
            name=api_pb2.MetricName(tag=tag, group=""), display_name=tag.removeprefix("hparams/")
        )
        for tag in tags
    ]
    complete = sum(1 for t in sweep.trials if t.state == TrialState.COMPLETE)
    return api_pb2.Experiment(
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


def _events_file(
    sweep_dir: Path, run: Path, suffix: str, summary: summary_pb2.Summary, step: int = 0
) -> Path:
    """An events file of the analysis' own (`suffix`) in `run` holding `summary`."""
    wall = time.time()
    records = io.BytesIO()
    writer = RecordWriter(records)
    writer.write(event_pb2.Event(wall_time=wall, file_version="brain.Event:2").SerializeToString())
    writer.write(event_pb2.Event(wall_time=wall, step=step, summary=summary).SerializeToString())
    path = run / f"events.out.tfevents.{int(wall):010d}.rlhp{suffix}"
    write_atomic(path, records.getvalue())
    return path


def _replace_all(sweep_dir: Path, suffix: str, new: list[Path]) -> None:
    """Remove the analysis' older events files of `suffix` (not the `new` ones)."""
    for old in sweep_dir.glob(f"**/events.out.tfevents.*{suffix}"):
        if old not in new:
            old.unlink()


def _write_events(sweep_dir: Path, run: Path, experiment: api_pb2.Experiment) -> None:
    """The experiment in an events file of its own in a session's run, replacing the last
    analysis' one. TensorBoard takes the experiment of the first run that has one, and a file
    at the sweep dir root would show as a run of its own (".") beside the sessions."""
    content = plugin_data_pb2.HParamsPluginData(experiment=experiment, version=0)
    value = summary_pb2.Summary.Value(
        tag=metadata.EXPERIMENT_TAG,
        metadata=metadata.create_summary_metadata(content),
        tensor=metadata.NULL_TENSOR,
    )
    path = _events_file(sweep_dir, run, TB_SUFFIX, summary_pb2.Summary(value=[value]))
    _replace_all(sweep_dir, TB_SUFFIX, [path])


def _write_stopped(sweep: Sweep, runs: list[Path]) -> None:
    """Each stopped trial's sessions get the metric `stopped_at`: the frame ASHA stopped it at
    (a scalar at that step, as the sessions' own metrics are)."""
    written = []
    for t in sweep.trials:
        if record.state(t) != record.STOPPED or (frame := record.stopped_at(t)) is None:
            continue
        for run in (r for r in runs if r.parent == sweep.trial_dir(t.number)):
            value = summary_pb2.Summary.Value(tag=STOPPED_AT, simple_value=float(frame))
            summary = summary_pb2.Summary(value=[value])
            written.append(_events_file(sweep.dir, run, STOPPED_SUFFIX, summary, int(frame)))
    _replace_all(sweep.dir, STOPPED_SUFFIX, written)


def write_tensorboard(sweep: Sweep) -> dict[str, Any]:
    """The sweep's HParams experiment, once a session has logged its HParams info: the five
    most important searched parameters (shown), the others and every other logged value
    (listed, hidden), the trials' final metrics and where ASHA stopped them; validation
    re-runs are no rows."""
    hide_validation_sessions(sweep.dir)
    logged, metrics, runs = _logged(sweep.dir)
    order = [n for n in ranked(list(sweep.space), _importance(sweep.dir)) if n in logged]
    searched = [
        _searched(sweep, name, sweep.space[name], logged[name], i < SHOWN)
        for i, name in enumerate(order)
    ]
    fixed = [_fixed(name, values) for name, values in logged.items() if name not in sweep.space]
    if runs:
        _write_events(sweep.dir, runs[0], _experiment(sweep, searched + fixed, metrics))
        _write_stopped(sweep, runs)
    return {
        "sessions": len(runs),
        "hparams": [i.name for i in searched],
        "not_logged": [name for name in sweep.space if name not in logged],
    }
