"""Where things are in a sweep directory, the trial id, and the one atomic write."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

JOURNAL = "study.journal"  # the study, unless hydra.sweeper.storage names another storage
STATE = "state.yaml"  # the sweeper's progress
ASHA = "asha"  # the ASHA coordinator's folder
RESULT = "result.yaml"  # in a trial folder: what the trial's training ended with
METRICS = "metrics.csv"  # in a trial folder: every log point of every session
POPULATIONS = "populations"  # population jobs of a batched search, by job number
VALIDATION = "validation"  # validation re-runs, one folder per validated trial
VALIDATION_CSV = "validation.csv"  # the validation table (rlhp.validate writes it)
JOB_BASE = 1_000_000  # population job N is launcher job JOB_BASE + N, apart from trial numbers


def trial_dir(sweep_dir: Path, number: int) -> Path:
    """Trial `number`'s folder. The trial id is one number everywhere: the Optuna trial
    number, the Hydra job number (the sweeper launches trial N as job N, and
    `hydra.sweep.subdir` is `${hydra.job.num}`), the ASHA trial id, and this folder's name."""
    return sweep_dir / str(number)


def trial_number(run_dir: Path) -> int | None:
    """The trial id of a trial folder, None for any other folder."""
    return int(run_dir.name) if run_dir.name.isdigit() else None


def population_dir(sweep_dir: Path, job: int) -> Path:
    return sweep_dir / POPULATIONS / str(job)


def validation_dir(sweep_dir: Path, number: int) -> Path:
    """Where trial `number`'s validation re-run trains."""
    return sweep_dir / VALIDATION / f"trial{number}"


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A new temporary path beside `path` to write the file to; on leaving it is fsync'd and
    renamed over `path`: readers see the old file or the new one, never a part, and a crash
    right after leaves the new one. On an error the old file stays and the temporary goes."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace the file at `path` with `data` (see `replacing`)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
