"""What a run's TensorBoard folders hold (torch-free: the writer is rlhp.log, the reader
rlhp.analysis.tensorboard).

Each session is one TensorBoard run, `RUN_DIR/session<s>`, so `tensorboard --logdir SWEEP_DIR`
shows run `3/session0` for trial 3's first session. Its scalars (global_step = frame) and, when
the trial ends, its HParams session info and final metrics (`hparams/...`), in a file of its own
(`HPARAMS_SUFFIX`). A trial's sessions share the run folder's name as HParams group: the HParams
table shows one row per trial, named by it.
"""

import time
from pathlib import Path

from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import metadata, plugin_data_pb2, summary_v2

HPARAMS_SUFFIX = ".hparams"  # the events file of a session's HParams info (small, read by analyze)
METRICS = ("hparams/objective", "hparams/final_total_reward_ma")  # a session's final metrics


def session_dir(run_dir: Path, session: int) -> Path:
    """The TensorBoard run of session `session` of the run in `run_dir`."""
    return run_dir / f"session{session}"


def session_start(run_dir: Path, hparams: dict) -> Summary:
    """The HParams session start info of a session of the run in `run_dir`: its hparams (values
    other than numbers, strings and booleans as strings), grouped by the run folder's name."""
    hparams = {
        k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in hparams.items()
    }
    return summary_v2.hparams_pb(hparams, trial_id=run_dir.name)


def session_end(status: int) -> Summary:
    """The HParams session end info (`summary_v2` has no protobuf-only builder for it)."""
    data = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    )
    value = Summary.Value(
        tag=metadata.SESSION_END_INFO_TAG,
        metadata=metadata.create_summary_metadata(data),
        tensor=metadata.NULL_TENSOR,
    )
    return Summary(value=[value])
