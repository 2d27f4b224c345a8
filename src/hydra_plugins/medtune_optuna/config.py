"""`hydra/sweeper=medtune_optuna`: the sweeper's settings (medtune.search.settings) in Hydra's ConfigStore."""

from hydra.core.config_store import ConfigStore

from medtune.search.settings import SweeperConfig

ConfigStore.instance().store(group="hydra/sweeper", name="medtune_optuna", node=SweeperConfig, provider="medtune")
