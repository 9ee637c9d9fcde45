"""Append-only JSON-lines files that tolerate torn lines.

Callers serialize access with a file lock; under it, a line without its newline was torn by a
writer that died, so it is skipped (with a warning) instead of being waited for.
"""

import json
import os
import warnings
from pathlib import Path
from typing import Any


class JsonLines:
    """An append-only file of JSON objects, one a line, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    @property
    def offset(self) -> int:
        """Bytes of the file read so far."""
        return self._offset

    def skip_to(self, offset: int) -> None:
        """Read on from ``offset`` (what a snapshot already holds)."""
        self._offset = offset

    def read_new(self) -> list[dict[str, Any]]:
        """Objects appended since the last call; torn or malformed lines are skipped."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        lines = [line for line in data.split(b"\n") if line.strip()]
        try:  # one parse for the whole tail; line by line only when some line is bad
            objs = json.loads(b"[" + b",".join(lines) + b"]")
            if len(objs) == len(lines) and all(isinstance(obj, dict) for obj in objs):
                return objs
        except ValueError:
            pass
        out = []
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                out.append(obj)
            else:
                warnings.warn(f"{self.path}: skipping torn line {line[:80]!r}", stacklevel=2)
        return out

    def append(self, obj: dict[str, Any]) -> int:
        """Append ``obj`` as a whole line in one write, ending a torn last line first.

        Not fsync'd: closing the file hands the line to the next holder of the lock, on this node
        or (close-to-open) on another; a line lost in a crash of the host only means that a trial
        resumed from its checkpoint is judged at that rung again. Returns the new file size.
        """
        data = json.dumps(obj).encode() + b"\n"
        with self.path.open("ab+") as f:
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = b"\n" + data
            f.write(data)
            return f.tell()
