"""The sweep-level HParams experiment: `tensorboard --logdir SWEEP_DIR` lists every trial (one row
per trial, its sessions grouped; rlhp.tb) with the searched parameters' domains, every other
logged value and the trials' final metrics.

TensorBoard's HParams dashboard shows an experiment's first five hparams as columns; the rest
are listed, unticked, for the user to add. Its plugin orders them by `differs` (true first),
then by name. `differs` is set on the searched parameters only, so they come first and are the
ones shown; the fixed config values come after, hidden (with fewer than five searched, the first
fixed ones by name fill the five columns).
"""

import io
import logging
import time
from pathlib import Path
from typing import Any

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

from rlhp.record import Sweep, write_atomic
from rlhp.tb import HPARAMS_SUFFIX, METRICS

log = logging.getLogger("rlhp.analyze")
TB_SUFFIX = ".rlhp_analyze"  # the experiment's events file; analyze replaces its own only
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
    paths = sorted(sweep_dir.glob(f"**/events.out.tfevents.*{HPARAMS_SUFFIX}"))
    for path in paths:
        try:
            for event in EventFileLoader(str(path)).Load():
                for value in event.summary.value:
                    if value.tag == metadata.SESSION_START_INFO_TAG:
                        content = value.metadata.plugin_data.content
                        start = metadata.parse_session_start_info_plugin_data(content)
                        for name, v in start.hparams.items():
                            values.setdefault(name, []).append(v)
                    elif value.metadata.plugin_data.plugin_name != metadata.PLUGIN_NAME:
                        metrics.add(value.tag)
        except Exception as e:  # a file being written: the next analysis reads it
            log.debug("skipping %s: %s", path, e)
    return values, metrics, sorted({p.parent for p in paths})


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


def _searched(
    sweep: Sweep, name: str, dist: BaseDistribution, logged: Values
) -> api_pb2.HParamInfo:
    """A searched parameter: shown (`differs`), its domain the search space and what the
    trials logged."""
    info = api_pb2.HParamInfo(name=name, display_name=name, differs=True)
    if isinstance(dist, CategoricalDistribution):
        choices = [_pb(sweep.value(name, c)) for c in dist.choices]
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
    """The experiment: `infos`, then the metrics the sessions logged, the objective first."""
    metric_infos = [
        api_pb2.MetricInfo(
            name=api_pb2.MetricName(tag=tag, group=""), display_name=tag.removeprefix("hparams/")
        )
        for tag in sorted(metrics or set(METRICS), key=lambda t: (t != METRICS[0], t))
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
    wall = time.time()
    records = io.BytesIO()
    writer = RecordWriter(records)
    writer.write(event_pb2.Event(wall_time=wall, file_version="brain.Event:2").SerializeToString())
    summary = summary_pb2.Summary(value=[value])
    writer.write(event_pb2.Event(wall_time=wall, summary=summary).SerializeToString())
    path = run / f"events.out.tfevents.{int(wall):010d}.rlhp{TB_SUFFIX}"
    write_atomic(path, records.getvalue())
    for old in sweep_dir.glob(f"**/events.out.tfevents.*{TB_SUFFIX}"):
        if old != path:
            old.unlink()


def write_tensorboard(sweep: Sweep) -> dict[str, Any]:
    """The sweep's HParams experiment, once a session has logged its HParams info: the searched
    parameters (shown) with their domains, then every other logged value (listed, hidden), and
    the trials' final metrics."""
    logged, metrics, runs = _logged(sweep.dir)
    searched = [
        _searched(sweep, name, dist, logged[name])
        for name, dist in sweep.space.items()
        if name in logged
    ]
    fixed = [_fixed(name, values) for name, values in logged.items() if name not in sweep.space]
    if runs:
        _write_events(sweep.dir, runs[0], _experiment(sweep, searched + fixed, metrics))
    return {
        "sessions": len(runs),
        "hparams": [i.name for i in searched],
        "not_logged": [name for name in sweep.space if name not in logged],
    }
