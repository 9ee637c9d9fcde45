"""A trial's `result.yaml`: written by the trial when its training ends, read by the sweeper
(which records it in the study), by validation and by the analysis."""

import math
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rlhp.record._layout import RESULT, write_atomic
from rlhp.record._states import COMPLETE, FAILED, STOPPED

# figures of a result the sweeper keeps on the study's trial (user attributes)
ATTRS = ("objective_std", "frame", "final", "max", "wall_s")
_OLD = {"std": "objective_std"}  # names of results written before 2026-12


def where() -> dict[str, str | None]:
    """Which machine and GPU ran a trial."""
    env = os.environ.get
    return {
        "host": socket.gethostname(),
        "slurm_job_id": env("SLURM_JOB_ID"),
        "slurm_step_id": env("SLURM_STEP_ID"),
        "cuda_visible_devices": env("CUDA_VISIBLE_DEVICES"),
    }


@dataclass
class TrialResult:
    """What a trial's training ended with: its objective (mean over sessions) and figures, or
    the error of a trial that failed inside a population job."""

    state: str  # complete | stopped | failed
    objective: float = math.nan  # mean over the sessions
    objective_std: float = math.nan  # std over the sessions
    stopped_at: int | None = None  # the frame ASHA stopped it at
    frame: int = 0  # frames trained, all sessions
    final: float = math.nan  # last total_reward_ma, mean over the sessions
    max: float = math.nan  # best total_reward_ma of any session
    wall_s: float = 0.0
    sessions: list[dict[str, Any]] = field(default_factory=list)  # each session's summary
    where: dict[str, str | None] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def of_sessions(cls, sessions: list[dict[str, Any]], objective: str) -> "TrialResult":
        """The result of the sessions' summaries; `objective` names the ranked figure (final,
        auc, eval); the sessions trained side by side (a population): the trial's wall time is
        the longest one's."""
        scores = [s[objective] for s in sessions]
        mean = math.fsum(scores) / len(scores)
        stopped_at = sessions[0]["stopped_at"]
        return cls(
            state=COMPLETE if stopped_at is None else STOPPED,
            objective=mean,
            objective_std=math.sqrt(math.fsum((x - mean) ** 2 for x in scores) / len(scores)),
            stopped_at=stopped_at,
            frame=int(sum(s["frame"] for s in sessions)),
            final=math.fsum(s["final"] for s in sessions) / len(sessions),
            max=float(max(s["max"] for s in sessions)),
            wall_s=float(max(s["wall_s"] for s in sessions)),
            sessions=sessions,
            where=where(),
        )

    @classmethod
    def failure(cls, error: str) -> "TrialResult":
        return cls(state=FAILED, error=error, where=where())

    @classmethod
    def read(cls, run_dir: Path) -> "TrialResult":
        """The result in a trial folder (OSError when there is none yet, ValueError in one line
        when it is not a result: a corrupted file)."""
        path = run_dir / RESULT
        try:
            data = OmegaConf.to_container(OmegaConf.load(path))
            data = {_OLD.get(k, k): v for k, v in data.items()}
            result = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except OSError:
            raise
        except Exception as e:  # bytes that are not UTF-8, not YAML, not a mapping, no state
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{path} is unreadable ({reason[:200]})") from None
        if result.state not in (COMPLETE, STOPPED, FAILED):
            raise ValueError(f"{path} is unreadable (state {result.state!r})")
        return result

    @staticmethod
    def exists(run_dir: Path) -> bool:
        return (run_dir / RESULT).is_file()

    def write(self, run_dir: Path) -> None:
        if self.state == FAILED:
            data = {"state": FAILED, "error": self.error, "where": self.where}
        else:
            data = asdict(self)
            del data["error"]
        write_atomic(run_dir / RESULT, OmegaConf.to_yaml(OmegaConf.create(data)))

    def attrs(self) -> dict[str, Any]:
        """The figures the sweeper keeps on the study's trial."""
        return {k: getattr(self, k) for k in ATTRS} | {"sessions": len(self.sessions)}


def recorded(attrs: dict[str, Any]) -> dict[str, Any]:
    """A study trial's recorded figures (its user attributes), under today's names."""
    return {_OLD.get(k, k): v for k, v in attrs.items()}
