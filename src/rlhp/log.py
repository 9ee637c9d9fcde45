"""Logging for one session: TensorBoard scalars (global_step = frame) and the run's metrics.csv;
at a trial's end, each session's HParams info (the layout: rlhp.tb)."""

import math
from pathlib import Path

import pandas as pd
from tensorboard.plugins.hparams import api_pb2
from torch.utils.tensorboard import SummaryWriter

from rlhp import record
from rlhp.tb import HPARAMS_SUFFIX, METRICS, session_dir, session_end, session_start


class Logger:
    """Writes each log row to TensorBoard and keeps metrics.csv current for all sessions.

    A resumed session passes `purge_step`: TensorBoard drops events the killed run wrote after
    its last checkpoint, so steps stay strictly increasing.
    """

    def __init__(self, run_dir: Path, session: int, purge_step: int | None = None):
        self.run_dir, self.session = run_dir, session
        self.writer = SummaryWriter(session_dir(run_dir, session), purge_step=purge_step)

    def log(self, history: list[dict]) -> None:
        row = history[-1]
        for key, value in row.items():
            if key not in ("frame", "session") and not math.isnan(value):
                self.writer.add_scalar(key, value, row["frame"])
        self.writer.flush()
        self._write_csv(history)

    def _write_csv(self, history: list[dict]) -> None:
        path = self.run_dir / record.METRICS
        rows = pd.DataFrame(history).assign(session=self.session)
        if path.exists():
            old = pd.read_csv(path)
            rows = pd.concat([old[old.session != self.session], rows], ignore_index=True)
        cols = ["session", "frame"] + [c for c in rows.columns if c not in ("session", "frame")]
        record.write_atomic(path, rows[cols].sort_values(["session", "frame"]).to_csv(index=False))

    def close(self) -> None:
        self.writer.close()


def log_hparams(run_dir: Path, hparams: dict, summaries: list[dict], objective: str) -> None:
    """Each session's HParams session info, in its own run: the hparams, its final metrics at
    its last frame and its end, in a file of their own (replaced when the trial ends again). The
    HParams table shows the trial's row with the mean over its sessions: the trial's objective."""
    start = session_start(run_dir, hparams)
    for s, summary in enumerate(summaries):
        run = session_dir(run_dir, s)
        for old in run.glob(f"*{HPARAMS_SUFFIX}"):  # a finished trial run again: written anew
            old.unlink()
        with SummaryWriter(run, filename_suffix=HPARAMS_SUFFIX) as writer:
            writer.file_writer.add_summary(start)
            for tag, value in zip(METRICS, (summary[objective], summary["final"]), strict=True):
                writer.add_scalar(tag, value, summary["frame"])
            writer.file_writer.add_summary(session_end(api_pb2.STATUS_SUCCESS))
