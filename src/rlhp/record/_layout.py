"""Where things are in a sweep directory and a run's folder, the trial id, and the one atomic
write."""

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

JOURNAL = "study.journal"  # the study, unless hydra.sweeper.storage names another storage
STATE = "state.yaml"  # the sweeper's progress
SWEEP = "sweep.yaml"  # the one study the dir belongs to and the settings of its first launch
ASHA = "asha"  # the ASHA coordinator's folder
RESULT = "result.yaml"  # in a trial folder: what the trial's training ended with
METRICS = "metrics.csv"  # in a trial folder: every log point of every session
POPULATIONS = "populations"  # population jobs of a batched search, by job number
VALIDATION = "validation"  # validation re-runs, one folder per validated trial
VALIDATION_CSV = "validation.csv"  # the validation table (rlhp.validate writes it)
JOB_BASE = 1_000_000  # population job N is launcher job JOB_BASE + N, apart from trial numbers
HYDRA_DIR = ".hydra"  # in a run folder: the config it ran with, as Hydra writes it
CONFIG = "config.yaml"  # the run's config, without its hydra node
OVERRIDES = "overrides.yaml"  # the run's command-line overrides
HYDRA = "hydra.yaml"  # {"hydra": the run's Hydra node}


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


def config_path(run_dir: Path) -> Path:
    return run_dir / HYDRA_DIR / CONFIG


def overrides_path(run_dir: Path) -> Path:
    return run_dir / HYDRA_DIR / OVERRIDES


def hydra_path(run_dir: Path) -> Path:
    return run_dir / HYDRA_DIR / HYDRA


def write_run(run_dir: Path, cfg: DictConfig, overrides: list[str], hydra: DictConfig) -> None:
    """A run's .hydra/ as Hydra writes it when its job starts: `hydra` (the Hydra node),
    `overrides`, then `cfg` (the config without its hydra node) resolved, last, as the run's
    start (`rlhp.sweep` reads its time)."""
    hydra_path(run_dir).parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save({"hydra": hydra}, hydra_path(run_dir))
    OmegaConf.save(OmegaConf.create(overrides), overrides_path(run_dir))
    OmegaConf.save(cfg, config_path(run_dir), resolve=True)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A new temporary path beside `path` to write the file to; on leaving it is fsync'd and
    renamed over `path`: readers see the old file or the new one, never a part, and a crash
    right after leaves the new one. On an error the old file stays and the temporary goes."""
    tmp = _new_file_beside(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _new_file_beside(path: Path) -> Path:
    """A new empty file `.<name>.<random>.tmp` beside `path`, with the umask's permissions
    (tempfile.mkstemp's are 0600 whatever the umask: teammates could not read the results)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace the file at `path` with `data` (see `replacing`)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
