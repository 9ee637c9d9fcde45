"""Errors rlhp reports as one line `rlhp: error: ...` with a non-zero exit, no traceback."""


class RlhpError(Exception):
    """An error the user can act on, reported in one line."""


class ConfigError(RlhpError, ValueError):
    """The composed configuration cannot run (unknown env, bad value, algo/env mismatch):
    found before anything is launched."""


class TooManyFailures(RlhpError):
    """More trials of a search failed than hydra.sweeper.max_failure_rate allows: the search
    stopped after its analysis (state.yaml says which failed and why)."""

    def __init__(self, failed: int, max_failure_rate: float, n_trials: int):
        super().__init__(
            f"{failed} trials failed, more than max_failure_rate={max_failure_rate} of "
            f"n_trials={n_trials}; see state.yaml"
        )


class Preempted(Exception):
    """Raised after a checkpoint when the job was asked to stop (SLURM preemption, time limit)."""
