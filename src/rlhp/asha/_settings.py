"""The scheduler's settings, checked the same way before launch and by the coordinator."""

from collections.abc import Mapping
from typing import Any

from rlhp.asha._lock import LOCKS
from rlhp.asha._rule import MODES, milestones

DEFAULTS = {"mode": "max", "brackets": 1, "lock": "flock"}


def check_settings(
    grace_period: int,
    reduction_factor: int,
    max_t: int,
    mode: str = "max",
    brackets: int = 1,
    lock: str = "flock",
) -> None:
    """Raise ValueError (one line naming the setting) unless the schedule can run."""
    if not _is_int(grace_period) or grace_period < 1:
        raise ValueError(f"grace_period must be an integer >= 1, got {grace_period!r}")
    if not _is_int(reduction_factor) or reduction_factor < 2:
        raise ValueError(f"reduction_factor must be an integer >= 2, got {reduction_factor!r}")
    if not _is_int(max_t) or max_t <= grace_period:
        raise ValueError(f"grace_period ({grace_period}) must be below max_t ({max_t!r})")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    rungs = milestones(grace_period, reduction_factor, max_t)
    if not _is_int(brackets) or not 1 <= brackets <= len(rungs):
        raise ValueError(
            f"brackets must be an integer in [1, {len(rungs)}] (the rungs {rungs} below max_t "
            f"{max_t}), got {brackets!r}"
        )
    if lock not in LOCKS:
        raise ValueError(f"lock must be one of {', '.join(LOCKS)}, got {lock!r}")


def scheduler_settings(scheduler: Mapping[str, Any], max_frame: int) -> dict[str, Any]:
    """The coordinator's keyword arguments from ``meta.search_scheduler``, checked.

    ``max_t`` defaults to ``max_frame``; an unknown key is refused like a bad value.
    """
    known = ("grace_period", "reduction_factor", "max_t", *DEFAULTS)
    if unknown := sorted(set(scheduler) - set(known)):
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    given = {k: v for k, v in scheduler.items() if v is not None}
    settings = DEFAULTS | {"max_t": max_frame} | given
    for key in ("grace_period", "reduction_factor"):
        if key not in settings:
            raise ValueError(f"{key} is missing")
    check_settings(**settings)
    return settings


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
