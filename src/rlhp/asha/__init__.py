"""Asynchronous successive halving (ASHA) shared through files by the trials of a sweep."""

from rlhp.asha._coordinator import Coordinator
from rlhp.asha._lock import lock_warning
from rlhp.asha._reporter import reporter, settings
from rlhp.asha._rule import milestones
from rlhp.asha._settings import check_settings, scheduler_settings

__all__ = [
    "Coordinator",
    "check_settings",
    "lock_warning",
    "milestones",
    "reporter",
    "scheduler_settings",
    "settings",
]
