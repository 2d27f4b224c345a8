"""The Optuna study of a search: its one storage file in the sweep dir, samplers, pruners, and recovery on re-run.

The storage is the only shared state: the sweeper asks and tells there, each trial's process reports its
intermediate figures there (so pruning works from SLURM nodes), and a re-run of the same command continues it.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import optuna

from medtune.errors import ConfigError
from medtune.run_dir import STUDY_FILE, STUDY_JOURNAL, is_live

DONE_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)  # count towards n_trials
SPACE_ATTR = "medtune_space"  # the study's search space and objectives, as the command gave them
PRUNER_ATTR = "medtune_pruner"  # build_pruner's arguments: Optuna keeps no pruner in the storage, a trial rebuilds it


class SamplerName(StrEnum):
    tpe = "tpe"  # seeded; multi-objective too
    random = "random"
    grid = "grid"  # every combination of choice(...) / range(...) values once
    cmaes = "cmaes"  # single objective; categorical parameters are sampled independently
    nsga2 = "nsga2"  # multi-objective (genetic)


class PrunerName(StrEnum):
    none = "none"
    median = "median"  # stop a trial below the median of earlier trials at the same step
    successive_halving = "successive_halving"
    hyperband = "hyperband"


class StorageKind(StrEnum):
    sqlite = "sqlite"  # optuna.db; optuna-dashboard opens it as it is
    journal = "journal"  # optuna.journal: an append-only file, safer than SQLite on NFS (many SLURM nodes)


def storage_spec(sweep_dir: Path, kind: str) -> str:
    """What a trial is told to open: an SQLite URL, or the journal file's path."""
    if kind not in set(StorageKind):
        raise ConfigError(f"hydra.sweeper.storage={kind!r} is not one of {', '.join(StorageKind)}.")
    if kind == StorageKind.journal:
        return str((sweep_dir / STUDY_JOURNAL).resolve())
    return f"sqlite:///{(sweep_dir / STUDY_FILE).resolve()}"


def find_storage(sweep_dir: Path) -> str | None:
    """The storage spec of the study file in a sweep dir, if it holds one (the report looks with this)."""
    for kind, name in ((StorageKind.sqlite, STUDY_FILE), (StorageKind.journal, STUDY_JOURNAL)):
        if (sweep_dir / name).is_file():
            return storage_spec(sweep_dir, kind)
    return None


def open_storage(spec: str) -> Any:
    """The storage behind a spec (one per process; SQLite waits for a writer instead of failing at once)."""
    if spec.startswith("sqlite:///"):
        return optuna.storages.RDBStorage(spec, engine_kwargs={"connect_args": {"timeout": 60}})
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(spec))


def build_sampler(
    name: str, seed: int, n_objectives: int, grid: Any = None, startup_trials: int = 10
) -> optuna.samplers.BaseSampler:
    """`startup_trials`: TPE's random trials before it models the results (Optuna's default 10 would leave a small
    LoRA budget random throughout)."""
    if name not in set(SamplerName):
        raise ConfigError(f"hydra.sweeper.sampler={name!r} is not one of {', '.join(SamplerName)}.")
    if name == SamplerName.cmaes and n_objectives > 1:
        raise ConfigError("hydra.sweeper.sampler=cmaes optimises one objective; use tpe or nsga2 for several.")
    if name == SamplerName.tpe:
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=max(startup_trials, 1))
    if name == SamplerName.random:
        return optuna.samplers.RandomSampler(seed=seed)
    if name == SamplerName.grid:
        return optuna.samplers.GridSampler(grid() if callable(grid) else grid, seed=seed)
    if name == SamplerName.cmaes:
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.NSGAIISampler(seed=seed)


def build_pruner(
    name: str, warmup_steps: int = 0, startup_trials: int = 0, n_objectives: int = 1
) -> optuna.pruners.BasePruner:
    if name not in set(PrunerName):
        raise ConfigError(f"hydra.sweeper.pruner={name!r} is not one of {', '.join(PrunerName)}.")
    if name != PrunerName.none and n_objectives > 1:
        raise ConfigError("Optuna prunes single-objective studies only: set hydra.sweeper.pruner=none.")
    if name == PrunerName.median:
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_steps)
    if name == PrunerName.successive_halving:
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(warmup_steps, 1))
    if name == PrunerName.hyperband:
        return optuna.pruners.HyperbandPruner(min_resource=max(warmup_steps, 1))
    return optuna.pruners.NopPruner()


def pruner_of(study: optuna.Study) -> optuna.pruners.BasePruner:
    """The pruner the sweeper configured, for a trial's process that loads the study from its storage."""
    return build_pruner(**study.user_attrs.get(PRUNER_ATTR, {"name": PrunerName.none}))


def check_same_space(study: optuna.Study, space: dict[str, Any]) -> None:
    """A re-run continues the study only with the space and objectives it started with (else its trials would
    compare different questions)."""
    saved = study.user_attrs.get(SPACE_ATTR)
    if saved is None:
        study.set_user_attr(SPACE_ATTR, space)
    elif saved != space:
        changed = sorted(key for key in saved.keys() | space.keys() if saved.get(key) != space.get(key))
        raise ConfigError(
            f"study {study.study_name} was started with another {', '.join(changed)}; re-run its own command, or "
            "give the new search its own hydra.sweep.dir."
        )


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Trials left running by a killed search whose run dir no process holds any more: marked failed, and their
    point asked again first, as a new trial in a fresh run dir. Returns their numbers."""
    lost = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        run_dir = trial.user_attrs.get("run_dir")
        if run_dir is None or not is_live(Path(run_dir)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"reasks": trial.number})
            lost.append(trial.number)
    return lost


def count_done(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=DONE_STATES))
