"""The search loop of the medtune_optuna sweeper: ask a batch of trials, launch each as an ordinary train.py job
through Hydra's configured launcher (local, SLURM), tell the study what each trial's run dir says.

    python train.py -m hydra/sweeper=medtune_optuna hydra.sweeper.n_trials=20 \
        'trainer.learning_rate=tag(log, interval(1e-5, 1e-2))' 'adapter.r=choice(4,8,16,32,64)' tuning=lora,qlora

Everything is checked before the first trial trains (space, sampler, pruner, objective keys against a composed
trial config). The study lives in the sweep dir; the same command again continues it: trials a killed search left
running are told from their run dir when it finished, else marked failed and asked again; finished trials are
never trained again. Each trial's run dir is `<sweep dir>/<study>/trial-<number>` (run_dir.TRIAL_SUBDIR).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf, open_dict

from medtune.cli import exit_on_user_error
from medtune.config import TrainConfig, to_train_config
from medtune.errors import ConfigError
from medtune.run_dir import (
    FINAL_STATES,
    RESULTS_FILE,
    TRIAL_SUBDIR,
    RunState,
    effective_state,
    is_bookkeeping,
    write_status,
)
from medtune.search.objectives import check_objectives, reported_figure
from medtune.search.settings import SweeperConfig, as_list
from medtune.search.space import Space, parse_space
from medtune.search.study import (
    PRUNER_ATTR,
    PrunerName,
    build_pruner,
    build_sampler,
    check_same_space,
    count_done,
    open_storage,
    recover_interrupted,
    storage_spec,
)

log = logging.getLogger(__name__)

N_TRIALS_ATTR = "medtune_n_trials"  # the target of the latest command: `medtune.sweep status` and the summary read it
GROUP_ATTR = "medtune_wandb_group"  # the W&B group of the study's trials (the report's summary run joins it)
RUN_DIR_ATTR = "run_dir"  # a trial's run dir (study.recover_interrupted reads it)
OVERRIDES_ATTR = "overrides"  # a trial's sampled parameters as overrides, ready to paste


@dataclass
class StudyPlan:
    """One study of the search: its outer-axis combination, and the trial config's figures it is checked against."""

    name: str
    combination: list[str]
    report: str | None  # the figure its trials report for the pruner (None: no pruning)


@dataclass
class Search:
    settings: SweeperConfig
    space: Space
    objectives: list[str]
    directions: list[str]
    sweep_dir: Path
    storage: str  # the spec each trial is told (medtune.search.study.storage_spec)
    plans: list[StudyPlan] = field(default_factory=list)

    def trial_overrides(self, plan: StudyPlan, trial: optuna.trial.BaseTrial) -> list[str]:
        """A trial's job: the command's fixed overrides, its study's axes, its sampled parameters, and where it
        reports (the search.* keys) and lives (its own subdir, named by its number)."""
        search = [f"search.storage={_quoted(self.storage)}", f"search.study={_quoted(plan.name)}"]
        search += [f"search.trial={trial.number}"] + ([f"search.report={plan.report}"] if plan.report else [])
        group = (
            []
            if any(o.startswith("wandb.group=") for o in self.space.fixed)
            else [f"wandb.group={_quoted(self.group(plan))}"]
        )
        subdir = f"hydra.sweep.subdir={_quoted(self.trial_subdir(plan, trial.number))}"
        return [*self.space.fixed, *plan.combination, *self.space.overrides(trial.params), *search, *group, subdir]

    def trial_subdir(self, plan: StudyPlan, number: int) -> str:
        return TRIAL_SUBDIR.format(study=plan.name, number=number)

    def group(self, plan: StudyPlan) -> str:
        return f"{self.sweep_dir.resolve().name}/{plan.name}"

    def record(self, plan: StudyPlan) -> dict[str, Any]:
        """What a study was started with; a re-run with another space or objective is refused (check_same_space)."""
        fixed = sorted(o for o in self.space.fixed if not is_bookkeeping(o.split("=")[0].lstrip("+~")))
        return {
            "fixed": fixed,
            "axes": plan.combination,
            "distributions": {
                k: optuna.distributions.distribution_to_json(d) for k, d in self.space.distributions.items()
            },
            "objective": self.objectives,
            "direction": self.directions,
        }


def run_search(sweeper: Any, arguments: list[str]) -> list[Any]:
    """Hydra's Sweeper.sweep: every study of the command, one after the other; the launched jobs' returns."""
    settings: SweeperConfig = sweeper.settings
    sweep_dir = Path(sweeper.config.hydra.sweep.dir)
    with exit_on_user_error():  # one line and exit 2, before anything trains
        search = prepare(settings, arguments, sweep_dir, lambda overrides: _compose(sweeper, overrides))
        studies = [open_study(search, plan) for plan in search.plans]
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(sweeper.config, sweep_dir / "multirun.yaml")  # as Hydra's sweepers do: `medtune.sweep resume`
    returns: list[Any] = []
    for plan, study in zip(search.plans, studies, strict=True):
        returns += run_study(search, plan, study, sweeper)
    return returns


def prepare(settings: SweeperConfig, arguments: list[str], sweep_dir: Path, compose: Any) -> Search:
    """Parse and check the whole command: the space, the names, and each study's objective keys against its
    composed trial config (a key no trial writes would otherwise be found after the first trial)."""
    params = [f"{key}={value}" for key, value in (settings.params or {}).items()]
    space = parse_space([*params, *arguments])
    objectives, directions = as_list(settings.objective), as_list(settings.direction)
    build_sampler(settings.sampler, settings.seed, len(objectives), grid=space.grid)  # names, grid finiteness
    build_pruner(settings.pruner, n_objectives=len(objectives))
    if settings.n_trials < 1 or settings.n_jobs < 1:
        raise ConfigError("hydra.sweeper.n_trials and hydra.sweeper.n_jobs must be at least 1.")
    search = Search(settings, space, objectives, directions, sweep_dir, storage_spec(sweep_dir, settings.storage))
    for combination in space.combinations():
        tc = _trial_config(compose, [*space.fixed, *combination, *space.overrides(space.example())])
        check_objectives(objectives, directions, tc)
        report = None if settings.pruner == PrunerName.none else reported_figure(objectives[0], tc)
        search.plans.append(StudyPlan(",".join(combination) or settings.study_name, combination, report))
    return search


def _compose(sweeper: Any, overrides: list[str]) -> TrainConfig:
    """A trial's train config as its job will compose it."""
    cfg = sweeper.hydra_context.config_loader.load_sweep_config(sweeper.config, list(overrides))
    with open_dict(cfg):
        del cfg["hydra"]
    return to_train_config(cfg)


def _trial_config(compose: Any, overrides: list[str]) -> TrainConfig:
    """A searched key that is no config key (or a bad fixed one) fails here, in one line, not in the first job."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose(overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"a trial's config does not compose: {str(err).splitlines()[0]}") from None


def open_study(search: Search, plan: StudyPlan) -> optuna.Study:
    """The plan's study in the sweep dir's storage, created or continued; its settings stored for the trials."""
    settings = search.settings
    search.sweep_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        storage=open_storage(search.storage),
        study_name=plan.name,
        directions=[optuna.study.StudyDirection[d.upper()] for d in search.directions],  # checked: maximize | minimize
        sampler=build_sampler(
            settings.sampler, settings.seed, len(search.objectives), search.space.grid, settings.startup_trials
        ),
        pruner=build_pruner(settings.pruner, settings.warmup_steps, settings.startup_trials, len(search.objectives)),
        load_if_exists=True,
    )
    check_same_space(study, search.record(plan))
    pruner = {"name": settings.pruner, "warmup_steps": settings.warmup_steps, "startup_trials": settings.startup_trials}
    study.set_user_attr(PRUNER_ATTR, pruner)  # the trials' processes rebuild the pruner from this
    study.set_user_attr(N_TRIALS_ATTR, settings.n_trials)
    study.set_user_attr(GROUP_ATTR, search.group(plan))
    return study


def run_study(search: Search, plan: StudyPlan, study: optuna.Study, sweeper: Any) -> list[Any]:
    """Batches of n_jobs trials until n_trials are complete or pruned (or max_failures trials failed)."""
    settings = search.settings
    settle_running(study, search.objectives)
    if count_done(study):
        log.info("study %s: %d of %d trials done; continuing", plan.name, count_done(study), settings.n_trials)
    returns: list[Any] = []
    failures = 0
    while (done := count_done(study)) < settings.n_trials and failures < settings.max_failures:
        if isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study):
            log.warning("study %s: the grid is exhausted after %d trials", plan.name, done)
            break
        trials = [study.ask(search.space.distributions) for _ in range(min(settings.n_jobs, settings.n_trials - done))]
        batch = []
        for trial in trials:
            trial.set_user_attr(
                RUN_DIR_ATTR, str((search.sweep_dir / search.trial_subdir(plan, trial.number)).resolve())
            )
            trial.set_user_attr(OVERRIDES_ATTR, search.space.overrides(trial.params))
            batch.append(search.trial_overrides(plan, trial))
        sweeper.validate_batch_is_legal(batch)
        returns += sweeper.launcher.launch(batch, initial_job_idx=trials[0].number)
        for trial in trials:
            state = tell_from_run_dir(study, trial.number, Path(trial.user_attrs[RUN_DIR_ATTR]), search.objectives)
            failures += state == optuna.trial.TrialState.FAIL
    return returns


def settle_running(study: optuna.Study, objectives: list[str]) -> None:
    """Trials a killed search left running: one whose run dir finished (or was pruned) is told from it, never
    trained again; one no process holds is marked failed, its run dir too, and its point asked again."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        run_dir = trial.user_attrs.get(RUN_DIR_ATTR)
        if run_dir is not None and effective_state(Path(run_dir)) in FINAL_STATES:
            tell_from_run_dir(study, trial.number, Path(run_dir), objectives)
    for number in recover_interrupted(study):
        run_dir = Path(study.trials[number].user_attrs.get(RUN_DIR_ATTR, ""))
        if run_dir.name and run_dir.is_dir():
            write_status(run_dir, RunState.failed, Interrupted(f"the search was killed during trial {number}"))
        log.info(
            "study %s: trial %d was interrupted: marked failed, its parameters asked again", study.study_name, number
        )


class Interrupted(Exception):
    """How a lost trial's run dir records why it is failed (its parameters are asked again as a new trial)."""


def tell_from_run_dir(
    study: optuna.Study, number: int, run_dir: Path, objectives: list[str]
) -> optuna.trial.TrialState:
    """Tell the study what the trial's run dir says: pruned, complete with its results.json figures, or failed."""
    state = effective_state(run_dir)
    if state == RunState.pruned:
        study.tell(number, state=optuna.trial.TrialState.PRUNED)  # its last reported figure is its value
        return optuna.trial.TrialState.PRUNED
    values = _objective_values(run_dir, objectives) if state == RunState.finished else None
    if values is None:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
        return optuna.trial.TrialState.FAIL
    study.tell(number, values)
    return optuna.trial.TrialState.COMPLETE


def _objective_values(run_dir: Path, objectives: list[str]) -> list[float] | None:
    """The objectives from results.json; None when one is missing or not a number (the trial then failed)."""
    path = run_dir / RESULTS_FILE
    results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    values = [results.get(key) for key in objectives]
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        log.warning("%s lacks a finite %s: the trial counts as failed", path, ", ".join(objectives))
        return None
    return [float(v) for v in values]  # type: ignore[arg-type]


def _quoted(text: str) -> str:
    """A value as a quoted Hydra override string (paths and study names hold '=', ',', ':' and '/')."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
