"""A sweep dir belongs to one study and keeps the settings of its first launch.

`sweep.yaml` (record.SWEEP), written when a search first launches, holds the study's storage
(null: the dir's own study.journal), name and id (a uuid in the study's user attrs), and every
run-config value the trials start from (searched keys aside). A later command on the dir
resumes that study only, with those settings: another study, a study that is gone from its
storage (a deleted journal) or a changed setting is refused before anything is launched, so a
trial folder is never resumed under another study's trial or another configuration.
"""

import uuid
from pathlib import Path
from typing import Any

import yaml

from rlhp import record
from rlhp.errors import ConfigError

# may change on resume: where and how fast a trial runs, not what it computes
RESUMABLE = ("device", "torch_threads", "meta.search_resources.")
NEW_DIR = "search in a new dir (hydra.sweep.dir=...)"


def new_id() -> str:
    return uuid.uuid4().hex


def study_name(storage: str | None, sweep_dir: Path) -> str:
    """The default study name: `rlhp` in the dir's own journal, the dir's absolute path in a
    storage that other searches may share (a database URL, a journal elsewhere)."""
    return "rlhp" if storage is None else f"rlhp:{sweep_dir.resolve()}"


def settings(leaves: dict[str, Any], searched: set[str]) -> dict[str, Any]:
    """The run-config values a sweep pins: every leaf but the searched and RESUMABLE ones."""
    searched = {k.lstrip("+") for k in searched}
    return {
        k: v
        for k, v in leaves.items()
        if k not in searched and not any(k == r or k.startswith(r) for r in RESUMABLE)
    }


def changed(pinned: dict[str, Any], now: dict[str, Any]) -> str | None:
    """The first setting that differs, in words (`env.max_frame: 30000, now 60000`), or None."""
    for key in sorted(set(pinned) | set(now)):
        old, new = pinned.get(key, "(unset)"), now.get(key, "(unset)")
        if old != new or type(old) is not type(new) and not _numbers(old, new):
            return f"{key}: {old!r} at the first launch, now {new!r}"
    return None


def _numbers(a: Any, b: Any) -> bool:
    return all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))


def read(sweep_dir: Path) -> dict[str, Any] | None:
    try:
        return record.pinned(sweep_dir)
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        path = sweep_dir / record.SWEEP
        raise ConfigError(f"{path} cannot be read ({type(e).__name__}); {NEW_DIR}") from None


def write(sweep_dir: Path, storage: str | None, name: str, id_: str, pinned: dict) -> None:
    data = {"storage": storage, "study_name": name, "study_id": id_, "settings": pinned}
    record.write_atomic(sweep_dir / record.SWEEP, yaml.safe_dump(data, sort_keys=False))


def left_behind(sweep_dir: Path) -> str | None:
    """What another search left in a sweep dir (trial folders, ASHA records), in words; None
    for a dir a new study may use."""
    numbers = sorted(n for p in sweep_dir.glob("*") if (n := record.trial_number(p)) is not None)
    if len(numbers) > 1:
        return f"trial folders {numbers[0]}-{numbers[-1]}"
    if numbers:
        return f"trial folder {numbers[0]}"
    if (sweep_dir / record.ASHA).is_dir():
        return f"ASHA records ({record.ASHA}/)"
    return None


def folder_params(run_dir: Path) -> dict[str, str] | None:
    """The searched values a trial folder was launched with (its .hydra/overrides.yaml), None
    when it has none."""
    try:
        overrides = yaml.safe_load(record.overrides_path(run_dir).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(overrides, list):
        return None
    return dict(str(o).split("=", 1) for o in overrides if "=" in str(o))


def foreign(run_dir: Path, expected: list[str]) -> str | None:
    """Why trial folder `run_dir` cannot be resumed with the overrides `expected` (one of its
    values differs), or None."""
    if (held := folder_params(run_dir)) is None:
        return None
    for override in expected:
        key, value = override.split("=", 1)
        if key in held and held[key] != value:
            return (
                f"its folder {run_dir.name}/ was launched with {key}={held[key]}, not {value}:"
                " never resumed from"
            )
    return None
