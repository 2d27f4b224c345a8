"""The search's building blocks: Hydra's override grammar → Optuna distributions, objective keys checked before any
training, and a killed search's running trial recovered on re-run."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from medtune.config import to_train_config
from medtune.errors import ConfigError
from medtune.search.objectives import check_objectives, reported_figure
from medtune.search.space import parse_space
from medtune.search.study import build_pruner, build_sampler, recover_interrupted


def test_space_splits_fixed_axes_and_searched():
    space = parse_space(
        [
            "trainer.learning_rate=tag(log, interval(1e-5, 1e-2))",
            "adapter.r=choice(4,8,16)",
            "adapter.alpha=range(8,128,step=8)",
            "tuning=lora,qlora",
            "trainer.max_steps=20",
        ]
    )
    assert space.fixed == ["trainer.max_steps=20"]
    assert space.combinations() == [["tuning=lora"], ["tuning=qlora"]]
    assert space.distributions["trainer.learning_rate"] == FloatDistribution(1e-5, 1e-2, log=True)
    assert space.distributions["adapter.r"] == CategoricalDistribution([4, 8, 16])
    assert space.distributions["adapter.alpha"] == IntDistribution(8, 120, step=8)
    overrides = space.overrides({"adapter.r": 8, "trainer.learning_rate": 0.00123})
    assert overrides == ["adapter.r=8", "trainer.learning_rate=0.00123"]


@pytest.mark.parametrize(
    "argument",
    ["x=interval(1,", "x=tag(lgo, interval(1, 2))", "x=interval(5, 1)", "x=tag(log, interval(0, 1))"],
)
def test_bad_expression_is_one_config_error(argument):
    with pytest.raises(ConfigError, match="search space"):
        parse_space([argument])


def test_grid_refuses_interval_and_unknown_names():
    with pytest.raises(ConfigError, match="interval"):
        parse_space(["x=interval(1, 2)"]).grid()
    with pytest.raises(ConfigError, match="sampler='tpx'"):
        build_sampler("tpx", 0, 1)
    with pytest.raises(ConfigError, match="single-objective"):
        build_pruner("median", 0, 1, n_objectives=2)


def test_objective_keys_checked_before_training(compose_config):
    tc = to_train_config(compose_config("train", "eval.every_steps=5"))
    check_objectives(["objective", "eval/demo/accuracy", "memory/peak_rss_mb"], ["maximize"] * 3, tc)
    for key in ("eval/igakuqa/accuracy", "acuracy"):
        with pytest.raises(ConfigError, match="no key a trial writes"):
            check_objectives([key], ["maximize"], tc)
    with pytest.raises(ConfigError, match="one direction"):
        check_objectives(["objective"], [], tc)
    assert reported_figure("objective", tc) == "eval/demo/accuracy"
    with pytest.raises(ConfigError, match="pruner needs"):
        reported_figure("memory/peak_rss_mb", tc)


def test_interrupted_trial_is_failed_and_reasked(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="s")
    done = study.ask({"x": FloatDistribution(0, 1)})
    study.tell(done, 0.5)
    lost = study.ask({"x": FloatDistribution(0, 1)})
    lost.set_user_attr("run_dir", str(tmp_path / "trial-001"))  # no process holds it: killed
    assert recover_interrupted(study) == [lost.number]
    states = [t.state for t in study.get_trials()]
    assert states[:2] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    again = study.ask({"x": FloatDistribution(0, 1)})
    assert again.params == lost.params and again.number == 2


def test_trial_reports_to_storage_and_is_pruned(compose_config, tiny_models, tmp_path):
    """The trial's own process opens the study, reports its in-training accuracy, and ends `pruned` when an earlier
    trial was better at the same step: run dir status pruned, a checkpoint at the pruned step."""
    from medtune.run_dir import CHECKPOINT_SUBDIR, Pruned, RunState, read_status
    from medtune.search.study import PRUNER_ATTR

    from helpers import train_job

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    study.set_user_attr(PRUNER_ATTR, {"name": "median", "warmup_steps": 0, "startup_trials": 1})
    best = study.ask()
    for step in (2, 4):
        best.report(1.0, step)  # a perfect earlier trial: any real one is below its median
    study.tell(best, 1.0)
    trial = study.ask()
    run_dir = tmp_path / "trial"
    search = [f"search.storage={storage}", "search.study=s", f"search.trial={trial.number}"]
    cfg = compose_config(
        "train",
        *search,
        "search.report=eval/demo/accuracy",
        "trainer.max_steps=6",
        "eval.every_steps=2",
        "eval.limit=4",
        "eval.at_end=false",
        "trainer.save_steps=1000",
    )
    with pytest.raises(Pruned):  # outside a multirun it reaches the caller; run_job records it in one
        train_job(cfg, run_dir)
    status = read_status(run_dir)
    assert status is not None and status["status"] == RunState.pruned and "step 2" in status["error"]
    assert (run_dir / CHECKPOINT_SUBDIR / "checkpoint-2").is_dir()
    assert study.trials[trial.number].intermediate_values.keys() == {2}
