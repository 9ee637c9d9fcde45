"""The study's storage, shared by the sweeper, the analysis and validation.

An Optuna journal file is one JSON record per line. A write cut short (a kill mid-write, a full
disk) leaves a torn last line, and Optuna would append the next record onto it, making the
journal unreadable for good. Here a torn tail is detected when the journal is opened and before
every append, moved into `<journal>.torn` with a warning, and every complete record is kept.
"""

import errno
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from rlhp.record._layout import JOURNAL

log = logging.getLogger("rlhp.record")
RECORD = b'{"op_code":'  # how every record Optuna writes begins
FULL = 2**20  # free bytes below which a disk counts as full


def journal_path(storage: str | None, sweep_dir: Path) -> Path | None:
    """The journal file of a `hydra.sweeper.storage` setting (any path: `x.journal`, `x.log`);
    None for a database URL (`sqlite:///...`, `postgresql://...`)."""
    if storage is None:
        return sweep_dir / JOURNAL
    return None if "://" in storage else Path(storage)


def open_storage(storage: str | None, sweep_dir: Path) -> BaseStorage | str:
    """The study storage of a sweep: its journal (torn tail set aside) or a database URL."""
    path = journal_path(storage, sweep_dir)
    if path is None:
        return storage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = JournalFile(str(path))
    try:
        set_aside_torn(path, backend)
    except OSError as e:  # a read-only copy: Optuna skips a torn last line when it reads
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        log.warning("%s: torn records left in place (%s)", path, e.strerror)
    return JournalStorage(backend)


def disk_errno(e: BaseException, sweep_dir: Path | None = None) -> int | None:
    """The errno when `e` comes from a full disk, a quota or a read-only sweep dir, else None.

    With `sweep_dir` (a trial's error, which may only quote the OSError in its message), also
    ENOSPC when the sweep dir's disk has less than FULL bytes left.
    """
    if isinstance(e, OSError) and e.errno in (
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
    ):
        return e.errno
    if sweep_dir is None:
        return None
    for number in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        if os.strerror(number) in str(e):
            return number
    return errno.ENOSPC if shutil.disk_usage(sweep_dir).free < FULL else None


def _split(data: bytes) -> tuple[int, bytes, bytes]:
    """(length of the intact head, the complete records after it, what is torn) of a journal.

    A line is complete when it ends with a newline and parses. A torn line that Optuna appended
    a record onto (`<torn><record>\\n`) gives its record back.
    """
    head, good, torn = None, [], []
    offset = 0
    for line in data.splitlines(keepends=True):
        size = len(line)
        if not (line.endswith(b"\n") and _parses(line)):
            head = offset if head is None else head
            start = line.rfind(RECORD)
            if start > 0 and line.endswith(b"\n") and _parses(line[start:]):
                torn.append(line[:start])
                line = line[start:]
            else:
                torn.append(line.rstrip(b"\n"))
                line = b""
        if head is not None:
            good.append(line)
        offset += size
    return len(data) if head is None else head, b"".join(good), b"\n".join(torn)


def _parses(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def set_aside_torn(path: Path, backend: "JournalFile") -> None:
    """Move the torn records of the journal at `path` into `<path>.torn` (under its lock)."""
    if not path.is_file() or not _split(path.read_bytes())[2]:
        return
    with backend.locked():  # a writer may have been mid-append: look again
        _repair(path)


def _repair(path: Path) -> None:
    head, good, torn = _split(path.read_bytes())
    if not torn:
        return
    with open(path.with_name(path.name + ".torn"), "ab") as f:
        f.write(torn + b"\n")
    with open(path, "r+b") as f:  # in place: a full disk has no room for a copy
        f.seek(head)
        f.write(good)
        f.truncate()
        os.fsync(f.fileno())
    log.warning("%s: torn records set aside in %s.torn; complete records kept", path, path.name)


class JournalFile(JournalFileBackend):
    """Optuna's journal file backend (its default symlink lock), which never appends onto a
    torn last line."""

    def __init__(self, path: str):
        self.path, self.lock = path, JournalFileSymlinkLock(path)
        super().__init__(path, lock_obj=self.lock)

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.lock.acquire()
        try:
            yield
        finally:
            self.lock.release()

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        with self.locked():
            if not _ends_with_newline(self.path):
                _repair(Path(self.path))
            with open(self.path, "ab") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())


def _ends_with_newline(path: str) -> bool:
    """Whether the file ends with a complete line (or is empty)."""
    with open(path, "rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
