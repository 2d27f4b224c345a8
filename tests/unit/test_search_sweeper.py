"""The medtune_optuna sweeper's pieces, without training: the plugin as Hydra finds it, the checks before any trial,
each trial's job overrides, telling the study from a run dir, and settling a killed search's trials."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from medtune.config import to_train_config
from medtune.errors import ConfigError
from medtune.run_dir import RESULTS_FILE, RunState, read_status, write_json, write_status
from medtune.search.runner import RUN_DIR_ATTR, prepare, settle_running, tell_from_run_dir
from medtune.search.settings import SweeperConfig
from medtune.search.status import search_status

SPACE = ["adapter.r=choice(4,8)", "trainer.learning_rate=tag(log, interval(1e-4, 1e-2))", "trainer.max_steps=4"]


def test_hydra_finds_the_plugin_and_its_config():
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = [plugin.__name__ for plugin in Plugins.instance().discover(Sweeper)]
    assert "MedtuneOptunaSweeper" in names
    node = ConfigStore.instance().load("hydra/sweeper/medtune_optuna.yaml").node
    assert node._target_ == "hydra_plugins.medtune_optuna.sweeper.MedtuneOptunaSweeper" and node.n_trials == 20


@pytest.fixture
def compose_trial(compose_config):
    return lambda overrides: to_train_config(compose_config("train", *overrides))


def test_outer_axes_are_one_study_each_and_trials_report_to_the_storage(compose_trial, tmp_path):
    settings = SweeperConfig(n_trials=4, objective="objective")  # a single key is taken as a list of one
    search = prepare(settings, [*SPACE, "eval.every_steps=2", "tuning=lora,dora"], tmp_path, compose_trial)
    assert [plan.name for plan in search.plans] == ["tuning=lora", "tuning=dora"]
    assert {plan.report for plan in search.plans} == {"eval/demo/accuracy"}  # the in-training accuracy
    study = optuna.create_study()
    trial = study.ask(search.space.distributions)
    overrides = search.trial_overrides(search.plans[1], trial)
    assert "tuning=dora" in overrides and f"adapter.r={trial.params['adapter.r']}" in overrides
    assert f"search.storage='sqlite:///{tmp_path.resolve()}/optuna.db'" in overrides
    assert "search.study='tuning=dora'" in overrides and "search.trial=0" in overrides
    assert "hydra.sweep.subdir='tuning=dora/trial-000'" in overrides


@pytest.mark.parametrize(
    ("settings", "arguments", "message"),
    [
        (SweeperConfig(sampler="tpx"), SPACE, "sampler='tpx' is not one of tpe"),
        (SweeperConfig(pruner="none"), ["x=tag(lgo, interval(1, 2))"], "search space: 'x=tag"),
        (SweeperConfig(pruner="none", objective="eval/demo/acc"), SPACE, "'eval/demo/acc' is no key a trial writes"),
        (SweeperConfig(), SPACE, "a pruner needs the objective reported"),  # no eval.every_steps
        (SweeperConfig(pruner="none"), ["adaptr.r=choice(4,8)"], "does not compose: Could not override 'adaptr.r'"),
        (SweeperConfig(objective=["objective", "memory/peak_rss_mb"]), SPACE, "single-objective"),
    ],
)
def test_bad_input_is_one_config_error_before_any_trial(compose_trial, tmp_path, settings, arguments, message):
    with pytest.raises(ConfigError, match=message):
        prepare(settings, arguments, tmp_path, compose_trial)
    assert not (tmp_path / "optuna.db").exists()


def _run_dir(path: Path, state: RunState, results: dict | None = None) -> Path:
    path.mkdir(parents=True)
    write_status(path, state)
    if results is not None:
        write_json(path / RESULTS_FILE, results)
    return path


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="s", direction="maximize")


def test_the_study_is_told_what_each_run_dir_says(tmp_path):
    study = _study(tmp_path)
    keys = ["eval/demo/accuracy"]
    dirs = [
        _run_dir(tmp_path / "done", RunState.finished, {keys[0]: 0.5}),
        _run_dir(tmp_path / "pruned", RunState.pruned),
        _run_dir(tmp_path / "crashed", RunState.failed),
        _run_dir(tmp_path / "nan", RunState.finished, {keys[0]: float("nan")}),
    ]
    trials = [study.ask({"r": CategoricalDistribution([4, 8])}) for _ in dirs]
    trials[1].report(0.25, 2)
    states = [tell_from_run_dir(study, t.number, d, keys) for t, d in zip(trials, dirs, strict=True)]
    assert [s.name for s in states] == ["COMPLETE", "PRUNED", "FAIL", "FAIL"]
    assert study.trials[0].value == 0.5 and study.trials[1].value == 0.25  # pruned: its last reported figure


def test_a_killed_searchs_trials_are_settled_finished_ones_never_retrained(tmp_path, capsys):
    study = _study(tmp_path)
    study.set_user_attr("medtune_n_trials", 3)
    space = {"r": CategoricalDistribution([4, 8, 16])}
    finished, lost = (study.ask(space) for _ in range(2))
    finished.set_user_attr(RUN_DIR_ATTR, str(_run_dir(tmp_path / "s/trial-000", RunState.finished, {"objective": 1})))
    lost_dir = _run_dir(tmp_path / "s/trial-001", RunState.running)  # no process holds it: killed
    lost.set_user_attr(RUN_DIR_ATTR, str(lost_dir))
    for path in (tmp_path / "s/trial-000", lost_dir):
        (path / ".hydra").mkdir()
        (path / ".hydra/overrides.yaml").write_text("[]")
    settle_running(study, ["objective"])
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "FAIL", "WAITING"]  # WAITING: asked again
    status = read_status(lost_dir)
    assert status is not None and status["status"] == RunState.failed and "killed during trial 1" in status["error"]
    again = study.ask(space)
    assert again.params == lost.params and again.number == 2  # its point is asked first
    assert search_status(tmp_path) == 1  # 1 of 3 done
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("s/trial-000  complete  value 1") and f"r={finished.params['r']}" in lines[0]
    assert lines[1].startswith("s/trial-001  failed")
    assert lines[-1] == "study s: 1 of 3 trials done (1 complete, 1 failed, 1 running)"
    assert json.loads((tmp_path / "s/trial-000" / RESULTS_FILE).read_text()) == {"objective": 1}
