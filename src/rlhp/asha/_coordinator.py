"""ASHA coordinator shared by the trials of a sweep through files in one directory."""

import base64
import json
import logging
import math
import os
import warnings
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import numpy as np

from rlhp.asha._lock import LOCKS, lock_warning
from rlhp.asha._rule import bracket_of, cutoff, decide, milestones, reached
from rlhp.asha._settings import check_settings
from rlhp.asha._store import JsonLines
from rlhp.record import write_atomic

log = logging.getLogger(__name__)

SNAPSHOT_BYTES = 16 * 1024  # a snapshot each time rungs.jsonl grows past a multiple of this


class Coordinator:
    """Rung-based asynchronous successive halving (ASHA) across processes.

    State lives in ``path``: ``rungs.jsonl`` (one line per trial and rung: bracket, rung, trial,
    value, stop), the source of truth; ``rungs.snapshot.json``, the rungs up to a byte offset of
    ``rungs.jsonl`` (trials, values as base64 float64, stopped trials), so that a new process
    reads only the tail; and ``decisions.jsonl``, a log of
    every decision (time, trial, bracket, rung, frame, value, cutoff, decision). Every
    read-modify-write holds the ``lock`` (``flock`` or ``symlink``, see ``rlhp.asha._lock``).
    ``config.json`` pins the schedule so that a resumed sweep cannot mix rungs of different
    schedules.

    ``max_t`` only bounds the milestones: ending a trial at its budget is the caller's job.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        grace_period: int,
        reduction_factor: int,
        max_t: int,
        mode: str = "max",
        brackets: int = 1,
        lock: str = "flock",
    ) -> None:
        check_settings(grace_period, reduction_factor, max_t, mode, brackets, lock)
        self._milestones = [
            milestones(grace_period, reduction_factor, max_t, s) for s in range(brackets)
        ]
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.reduction_factor = reduction_factor
        self.mode = mode
        self._lock = LOCKS[lock](self.path / LOCKS[lock].filename)
        self._rungs_file = JsonLines(self.path / "rungs.jsonl")
        self._snapshot = self.path / "rungs.snapshot.json"
        self._log = JsonLines(self.path / "decisions.jsonl")
        self._rungs: dict[tuple[int, int], dict[str, float]] = {}
        self._last: dict[str, int] = {}
        self._stopped: dict[str, int] = {}
        self._loaded = False
        config = {
            "grace_period": grace_period,
            "reduction_factor": reduction_factor,
            "max_t": max_t,
            "mode": mode,
            "brackets": brackets,
        }
        self._pin(config)
        if lock == "flock" and (warning := lock_warning(self.path)):
            log.warning(warning)

    def report(self, trial_id: int | str, frame: int, value: float) -> bool:
        """Record ``value`` at ``frame`` if it reaches a new rung; False means stop the trial.

        A repeated report gets the decision already made; a stopped trial always gets False.
        A NaN ``value`` (no finished episode yet) is not judged: the trial goes on, and its first
        report with a value is recorded at the highest rung it has reached by then.
        """
        trial, frame, value = str(trial_id), int(frame), float(value)
        self._load_snapshot()
        with self._lock:
            self._refresh()
            if trial in self._stopped:
                return False
            if math.isnan(value):
                return True
            bracket = bracket_of(trial, [len(rungs) for rungs in self._milestones])
            rung = reached(frame, self._milestones[bracket], self._last.get(trial))
            if rung is None:
                return True
            recorded = self._rungs.get((bracket, rung), {})
            cut = cutoff(recorded.values(), self.reduction_factor, self.mode)
            go = decide(value, cut, self.mode)
            before = self._rungs_file.offset
            after = self._rungs_file.append(
                {"bracket": bracket, "rung": rung, "trial": trial, "value": value, "stop": not go}
            )
            self._log.append(
                {
                    "time": datetime.now().astimezone().isoformat(),
                    "trial": trial,
                    "bracket": bracket,
                    "rung": rung,
                    "frame": frame,
                    "value": value,
                    "cutoff": cut,
                    "decision": "continue" if go else "stop",
                }
            )
            self._refresh()
            snapshot = None
            if before // SNAPSHOT_BYTES != after // SNAPSHOT_BYTES:
                snapshot = {
                    "offset": self._rungs_file.offset,
                    "rungs": [
                        [*key, list(values), _pack(values.values()), self._stopped_at_rung(key)]
                        for key, values in self._rungs.items()
                    ],
                }
        if snapshot is not None:  # one reporter per SNAPSHOT_BYTES writes it, after the lock
            write_atomic(self._snapshot, json.dumps(snapshot))
        return go

    def rungs(self) -> dict[tuple[int, int], dict[str, float]]:
        """Recorded values by trial, in arrival order, for each (bracket, rung)."""
        self._load_snapshot()
        with self._lock:
            self._refresh()
            return {key: dict(values) for key, values in self._rungs.items()}

    def stopped_at(self, trial_id: int | str) -> int | None:
        """The rung (milestone frame) at which the trial was stopped, or None."""
        self._load_snapshot()
        with self._lock:
            self._refresh()
            return self._stopped.get(str(trial_id))

    def _pin(self, config: dict[str, object]) -> None:
        file = self.path / "config.json"
        if not file.exists():
            with self._lock:
                if not file.exists():
                    write_atomic(file, json.dumps(config, indent=2) + "\n")
        pinned = json.loads(file.read_text())
        if pinned != config:
            raise ValueError(f"{file} holds ASHA settings {pinned}, not {config}")

    def _load_snapshot(self) -> None:
        """Start from the snapshot, once, if there is a sound one; else from the first line."""
        if self._loaded:
            return
        self._loaded = True
        try:
            snapshot = json.loads(self._snapshot.read_text())
            offset = int(snapshot["offset"])
            if offset > self._rungs_file.path.stat().st_size:
                raise ValueError(f"offset {offset} is past the end of {self._rungs_file.path}")
            rungs, stopped, last = {}, {}, {}
            for bracket, rung, trials, values, stops in sorted(snapshot["rungs"], key=_rung):
                rungs[int(bracket), int(rung)] = dict(zip(trials, _unpack(values), strict=True))
                last.update(dict.fromkeys(trials, int(rung)))
                stopped.update(dict.fromkeys(stops, int(rung)))
        except FileNotFoundError:
            return
        except (ValueError, TypeError, KeyError) as e:
            warnings.warn(f"{self._snapshot}: ignored ({e}); reading every record", stacklevel=3)
            return
        self._rungs, self._stopped, self._last = rungs, stopped, last
        self._rungs_file.skip_to(offset)

    def _stopped_at_rung(self, key: tuple[int, int]) -> list[str]:
        return [trial for trial in self._rungs[key] if self._stopped.get(trial) == key[1]]

    def _refresh(self) -> None:
        for record in self._rungs_file.read_new():
            try:
                key = (int(record["bracket"]), int(record["rung"]))
                trial, value, stop = str(record["trial"]), float(record["value"]), record["stop"]
            except (KeyError, TypeError, ValueError):
                where = self._rungs_file.path
                warnings.warn(f"{where}: skipping bad record {record}", stacklevel=3)
                continue
            self._rungs.setdefault(key, {})[trial] = value
            self._last[trial] = max(key[1], self._last.get(trial, key[1]))
            if stop:
                self._stopped[trial] = key[1]


def _rung(entry: list) -> int:
    return int(entry[1])


def _pack(values: Iterable[float]) -> str:
    """Float64 values as base64 text: exact, and 2-3x faster to load than JSON numbers."""
    return base64.b64encode(np.fromiter(values, dtype="<f8").tobytes()).decode()


def _unpack(text: str) -> list[float]:
    return np.frombuffer(base64.b64decode(text, validate=True), dtype="<f8").tolist()
