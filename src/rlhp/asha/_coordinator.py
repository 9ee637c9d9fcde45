"""ASHA coordinator shared by the trials of a sweep through files in one directory."""

import json
import os
import warnings
from datetime import datetime
from pathlib import Path

from filelock import FileLock

from rlhp.asha._rule import MODES, bracket_of, cutoff, decide, milestones, reached
from rlhp.asha._store import JsonLines


class Coordinator:
    """Rung-based asynchronous successive halving (ASHA) across processes.

    State lives in ``path``: ``rungs.jsonl`` (one line per trial and rung: bracket, rung, trial,
    value, stop), the source of truth, and ``decisions.jsonl``, a log of every decision (time,
    trial, bracket, rung, frame, value, cutoff, decision). Every read-modify-write holds the
    ``fcntl`` lock ``path/lock``, which the OS releases if its holder dies. ``config.json`` pins
    the settings so that a resumed sweep cannot mix rungs of different schedules.

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
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if grace_period < 1 or reduction_factor < 2 or max_t <= grace_period:
            raise ValueError("need grace_period >= 1, reduction_factor >= 2, max_t > grace_period")
        top = len(milestones(grace_period, reduction_factor, max_t))
        if not 1 <= brackets <= top:
            raise ValueError(f"brackets must be in [1, {top}], got {brackets}")
        self._milestones = [
            milestones(grace_period, reduction_factor, max_t, s) for s in range(brackets)
        ]
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.reduction_factor = reduction_factor
        self.mode = mode
        self._lock = FileLock(self.path / "lock")
        self._rungs_file = JsonLines(self.path / "rungs.jsonl")
        self._log = JsonLines(self.path / "decisions.jsonl")
        self._rungs: dict[tuple[int, int], dict[str, float]] = {}
        self._last: dict[str, int] = {}
        self._stopped: dict[str, int] = {}
        config = {
            "grace_period": grace_period,
            "reduction_factor": reduction_factor,
            "max_t": max_t,
            "mode": mode,
            "brackets": brackets,
        }
        with self._lock:
            self._pin(config)

    def report(self, trial_id: int | str, frame: int, value: float) -> bool:
        """Record ``value`` at ``frame`` if it reaches a new rung; False means stop the trial.

        A repeated report gets the decision already made; a stopped trial always gets False.
        A NaN ``value`` counts as the worst one: it stops the trial at any rung with a cutoff.
        """
        trial, frame, value = str(trial_id), int(frame), float(value)
        with self._lock:
            self._refresh()
            if trial in self._stopped:
                return False
            bracket = bracket_of(trial, [len(rungs) for rungs in self._milestones])
            rung = reached(frame, self._milestones[bracket], self._last.get(trial))
            if rung is None:
                return True
            recorded = self._rungs.get((bracket, rung), {})
            cut = cutoff(recorded.values(), self.reduction_factor, self.mode)
            go = decide(value, cut, self.mode)
            self._rungs_file.append(
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
            return go

    def rungs(self) -> dict[tuple[int, int], dict[str, float]]:
        """Recorded values by trial, in arrival order, for each (bracket, rung)."""
        with self._lock:
            self._refresh()
            return {key: dict(values) for key, values in self._rungs.items()}

    def stopped_at(self, trial_id: int | str) -> int | None:
        """The rung (milestone frame) at which the trial was stopped, or None."""
        with self._lock:
            self._refresh()
            return self._stopped.get(str(trial_id))

    def _pin(self, config: dict[str, object]) -> None:
        file = self.path / "config.json"
        if file.exists():
            pinned = json.loads(file.read_text())
            if pinned != config:
                raise ValueError(f"{file} holds ASHA settings {pinned}, not {config}")
        else:
            tmp = file.with_suffix(".tmp")
            tmp.write_text(json.dumps(config, indent=2) + "\n")
            os.replace(tmp, file)

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
