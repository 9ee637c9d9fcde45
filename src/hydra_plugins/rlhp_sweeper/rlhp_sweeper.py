"""The rlhp sweeper: a thin Hydra plugin that imports its implementation lazily."""

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from . import config as config  # noqa: F401  (registers hydra/sweeper=rlhp)


class RlhpSweeper(Sweeper):
    """Asynchronous trial slots over any Hydra launcher, Optuna samplers, constraints, resume."""

    def __init__(self, **kwargs: Any) -> None:
        from rlhp.sweep._sweeper import SweeperImpl

        self.impl = SweeperImpl(**kwargs)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        self.impl.sweep(arguments)
