"""A hyper-parameter search as a user runs it: `train.py -m hydra/sweeper=medtune_optuna`, killed mid-search, the same
command again, then `medtune.sweep status` and the report. The searches are forked from a fork server
(helpers.fork_script: the script as __main__ with its own argv, exit status and output, without a fresh interpreter's
imports); status, the report and the refused sampler are fresh processes (a fresh `train.py` killed: test_train_cli)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from medtune.run_dir import FINAL_STATES, METRICS_LOG, RESULTS_FILE, STATUS_FILE, effective_state

from helpers import fork_script, kill_forked_script_when, run_module, run_script

# Very short trials: 4 steps, the held-out loss every 2 (continuous, so the median pruner has something to cut),
# no QA scoring at the end and no W&B, so 8 trials take about a minute on an idle 2-core machine.
TRIAL = [
    "trainer.max_steps=4",
    "trainer.batch_size=2",
    "dataset.limit=80",  # 80 training records, 8 held out: the held-out loss in a second
    "trainer.eval_steps=2",
    "trainer.logging_steps=2",
    "trainer.save_steps=1000",
    "eval.at_end=false",
    "wandb.mode=disabled",
]
SEARCH = [
    "hydra/sweeper=medtune_optuna",
    "hydra.sweeper.n_trials=8",
    "hydra.sweeper.startup_trials=2",
    "hydra.sweeper.objective=eval/loss",
    "hydra.sweeper.direction=minimize",
    "trainer.learning_rate=tag(log, interval(1e-5, 5e-2))",
    "adapter.r=choice(4,8,16)",
]


def _final(trial_dir: Path) -> bool:
    return (trial_dir / STATUS_FILE).is_file() and effective_state(trial_dir) in FINAL_STATES


def test_killed_search_resumes_to_n_trials_without_retraining(tmp_path, tiny_models):
    sweep = tmp_path / "sweep"
    command = ["-m", *SEARCH, *TRIAL, f"hydra.sweep.dir={sweep}"]
    first = [sweep / "search" / f"trial-{n:03d}" for n in range(3)]
    kill_forked_script_when("train.py", *command, cwd=tmp_path, ready=lambda: all(map(_final, first)), timeout=300)
    stamps = {d: [(d / f).stat().st_mtime_ns for f in (STATUS_FILE, METRICS_LOG)] for d in first}

    again = fork_script("train.py", *command, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{sweep / 'optuna.db'}")
    states = [t.state for t in study.trials]
    done = [s for s in states if s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(done) == 8 and optuna.trial.TrialState.PRUNED in states
    assert all(s in done for s in states[:3])
    assert {d: [(d / f).stat().st_mtime_ns for f in (STATUS_FILE, METRICS_LOG)] for d in first} == stamps  # untouched
    assert "medtune: search study search: 8 of 8 trials done" in again.stdout

    status = run_module("medtune.sweep", "status", str(sweep), cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.splitlines()[0].startswith("search/trial-000  ") and "adapter.r=" in status.stdout

    report = run_module("medtune.report", str(sweep), "--wandb-mode", "disabled", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    best = study.best_trial
    markdown = (sweep / "report" / "report.md").read_text(encoding="utf-8")
    assert " ".join(best.user_attrs["overrides"]) in markdown and "optuna-dashboard" in report.stdout
    results = json.loads((Path(best.user_attrs["run_dir"]) / RESULTS_FILE).read_text())
    assert results["eval/loss"] == best.value


def test_unknown_sampler_is_one_line_before_any_training(tmp_path):
    proc = run_script(
        "train.py", "-m", *SEARCH, "hydra.sweeper.sampler=tpx", f"hydra.sweep.dir={tmp_path}/s", cwd=tmp_path
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "medtune: error: hydra.sweeper.sampler='tpx' is not one of tpe, random, grid, cmaes, nsga2."
    ]
    assert not (tmp_path / "s").exists()


def test_the_keys_a_search_may_optimise_are_the_keys_a_run_writes(trained_run):
    """objectives.py names the results.json keys a trial writes (so a typo fails before training): a real run's."""
    from medtune.search.objectives import QA_METRICS, TRAINING_KEYS

    run_dir, proc = trained_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    cuda_only, permutations_only = (
        {"memory/cuda_max_allocated_mb", "memory/cuda_max_reserved_mb"},
        {"consistent_accuracy"},
    )
    assert set(TRAINING_KEYS) - cuda_only <= set(results)
    assert {f"eval/demo/{key}" for key in set(QA_METRICS) - permutations_only} <= set(results)
