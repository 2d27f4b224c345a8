"""The Sweeper Hydra instantiates for `hydra/sweeper=medtune_optuna`: it keeps the launcher, then hands the
command line to medtune.search.runner (ask a batch of trials, launch them as jobs, tell each its results.json)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from medtune.search.settings import SweeperConfig


class MedtuneOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.settings = SweeperConfig(**settings)
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from medtune.search.runner import run_search

        assert self.config is not None and self.hydra_context is not None
        return run_search(self, arguments)
