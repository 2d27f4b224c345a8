"""The medtune_optuna sweeper's settings (`hydra.sweeper.*`), registered in Hydra's ConfigStore by the plugin.

Kept free of optuna and torch: Hydra imports every plugin's config at each start of train.py, search or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SWEEPER_TARGET = "hydra_plugins.medtune_optuna.sweeper.MedtuneOptunaSweeper"


@dataclass
class SweeperConfig:
    """`hydra/sweeper=medtune_optuna`. Names (sampler, pruner, storage) are plain strings, checked by the sweeper
    before any trial, so a typo prints one line (an enum here would fail inside Hydra's composition, with a trace)."""

    _target_: str = SWEEPER_TARGET
    n_trials: int = 20  # complete-or-pruned trials per study; a re-run continues until there are this many
    n_jobs: int = 1  # trials asked at once, each a job of the configured launcher (local: one after another)
    sampler: str = "tpe"  # tpe | random | grid | cmaes | nsga2 (medtune.search.study.SamplerName)
    seed: int = 0  # the sampler's seed
    pruner: str = "median"  # none | median | successive_halving | hyperband (medtune.search.study.PrunerName)
    warmup_steps: int = 0  # training steps before a trial may be pruned (the median's warm-up, hyperband's minimum)
    startup_trials: int = 3  # trials TPE samples at random, and the median pruner lets run to the end, first
    # results.json keys (one, or a list for a multi-objective study), each with its direction (maximize | minimize)
    objective: Any = field(default_factory=lambda: ["objective"])
    direction: Any = field(default_factory=lambda: ["maximize"])
    storage: str = "sqlite"  # sqlite (optuna.db) | journal (optuna.journal; safer on NFS), in the sweep dir
    study_name: str = "search"  # with outer axes (a,b lists) each study is named by its axis values instead
    max_failures: int = 3  # failed trials (not pruned) in one invocation before the search stops
    params: dict[str, str] | None = None  # the search space as key: expression (an experiment file), beside the CLI's


def as_list(value: Any) -> list[str]:
    """`objective=accuracy` and `objective=[a,b]` alike (an OmegaConf ListConfig is no list)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]
