"""The queue between a batched search's controller and one population job, in the sweep dir.

The controller assigns trials to a population job by appending `{"trial": N, "dir": PATH}`
lines to `<sweep>/populations/<id>/inbox.jsonl` (each line written whole under a lock and
fsync'd, so a reader never takes half a line; one that assigns no trial is skipped), beats
`alive` while it runs, and writes `closed` when no more trials will come. The job takes new
lines in order as its slots free. A job whose controller stopped beating for `STALE_S` (killed)
takes nothing more: the controller run again re-assigns the unfinished trials, which resume
from their checkpoints. Torch-free.
"""

import json
import logging
import os
import time
from pathlib import Path

from filelock import FileLock

log = logging.getLogger("rlhp")
STALE_S = 60.0  # a controller silent this long is gone
GROUPS = "structure_groups"  # the structure groups the job holds at most


def parse(line: bytes) -> tuple[int, Path] | None:
    """An assignment line as (trial, folder); a line that is not one (garbage written into the
    inbox) is skipped with a warning, or gives back the assignment appended onto it."""
    start = line.rfind(b'{"trial"')
    try:
        data = json.loads(line[max(start, 0) :])
        return int(data["trial"]), Path(data["dir"])
    except (ValueError, KeyError, TypeError):
        log.warning("rlhp: skipped a line of the inbox that assigns no trial: %r", line[:200])
        return None


def group_size(population: int, groups: int) -> int:
    """Trials one structure group of a job holds at once: the job's population over its
    groups, each at least one trial."""
    return -(-population // min(groups, population))


class Inbox:
    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / "inbox.jsonl"
        self.offset = 0  # bytes taken so far (the job's side)

    # -- the controller's side

    def put(self, trial: int, run_dir: Path) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"trial": trial, "dir": str(run_dir)}) + "\n"
        with FileLock(self.folder / ".inbox.lock"), open(self.path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def beat(self) -> None:
        """The controller is alive (at least every few seconds while it runs)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "alive").touch()

    def close(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "closed").touch()

    def set_groups(self, groups: int) -> None:
        """The structure groups the job holds at most (before the job starts)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / GROUPS).write_text(f"{groups}\n")

    @property
    def groups(self) -> int:
        return int((self.folder / GROUPS).read_text())

    # -- the job's side

    def take(self) -> list[tuple[int, Path]]:
        """The trials assigned since the last call, in order."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # whole lines only
        self.offset += end
        lines = [parse(line) for line in data[:end].splitlines() if line.strip()]
        return [line for line in lines if line is not None]

    @property
    def open(self) -> bool:
        """More trials may come: some are not taken yet, or the controller, beating recently,
        has not closed the inbox."""
        if self.path.exists() and self.path.stat().st_size > self.offset:
            return True
        if (self.folder / "closed").exists():
            return False
        try:
            return time.time() - (self.folder / "alive").stat().st_mtime < STALE_S
        except FileNotFoundError:
            return False
