"""The sweep-level HParams summary: `tensorboard --logdir SWEEP_DIR` lists every trial with
the searched parameters' domains and its final metrics."""

import logging
import time
from pathlib import Path
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from rlhp.record import Sweep, decode

log = logging.getLogger("rlhp.analyze")
TB_SUFFIX = ".rlhp_analyze"  # the root HParams events file; analyze replaces its own only


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
