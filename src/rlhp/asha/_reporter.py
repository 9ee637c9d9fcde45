"""A trial's reports to the ASHA coordinator of its search, from its config
(`meta.search_scheduler`)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlhp.asha._coordinator import Coordinator
from rlhp.asha._settings import scheduler_settings
from rlhp.record import ASHA


def settings(cfg: DictConfig) -> dict[str, Any] | None:
    """The coordinator's keyword arguments from `cfg.meta.search_scheduler` (max_t defaults to
    env.max_frame), checked: ValueError naming the setting. None without a search scheduler."""
    scheduler = OmegaConf.select(cfg, "meta.search_scheduler")
    if not scheduler:
        return None
    return scheduler_settings(OmegaConf.to_container(scheduler, resolve=True), cfg.env.max_frame)


def reporter(cfg: DictConfig, sweep_dir: Path, trial: int) -> Callable[[int, float], bool] | None:
    """Trial `trial`'s report (frame, value) -> go on? to the coordinator of the search in
    `sweep_dir`; None without a search scheduler."""
    if (kwargs := settings(cfg)) is None:
        return None
    coordinator = Coordinator(sweep_dir / ASHA, **kwargs)
    return lambda frame, value: coordinator.report(trial, frame, value)
