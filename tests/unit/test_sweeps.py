"""Every W&B sweep file expands, by W&B's own sweep logic, into command lines Hydra composes and validates."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from medtune.config import to_train_config

from helpers import REPO, compose_many

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the sweeps package still uses pydantic-v1 config names
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    import sweeps

SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))
RANDOM_SAMPLES = 6
SAMPLES = {"grid": None, "random": RANDOM_SAMPLES, "bayes": 3}  # bayes fits a Gaussian process per proposal (slow)


def expand(sweep: dict) -> list[list[str]]:
    """The Hydra override lists the W&B agent would pass (${args_no_hyphens}), grid exhausted or sampled (each
    finished run with a metric value, so bayes fits real figures)."""
    runs: list = []
    limit = SAMPLES[sweep["method"]]
    while limit is None or len(runs) < limit:
        proposed = sweeps.next_run(sweep, runs)
        if proposed is None:
            break
        proposed.state = sweeps.RunState.finished
        proposed.summary_metrics = {sweep["metric"]["name"]: 0.1 * (len(runs) % 3)}
        runs.append(proposed)
    return [create_sweep_command_args({"args": run.config})["args_no_hyphens"] for run in runs]


def test_there_are_sweep_files():
    assert {p.stem for p in SWEEP_FILES} >= {"demo_matrix", "jmedlora_matrix", "lora_hparams"}


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_sweep_expands_to_valid_hydra_overrides(cache_dir, path: Path):
    sweep = yaml.safe_load(path.read_text())
    assert sweeps.schema_violations_from_proposed_config(sweep) == []
    assert sweep["program"] == "train.py" and "${args_no_hyphens}" in sweep["command"]
    command_lines = expand(sweep)
    if sweep["method"] == "grid":
        expected = 1
        for spec in sweep["parameters"].values():
            expected *= len(spec.get("values", [None]))
        assert len(command_lines) == expected
    else:
        assert len(command_lines) == SAMPLES[sweep["method"]]
    for cfg in compose_many("train", command_lines, cache_dir):
        tc = to_train_config(cfg)  # unknown keys or bad values fail here
        assert sweep["metric"]["name"] == f"eval/{tc.eval.suite}/accuracy"  # the key train.py logs
    assert len({tuple(lines) for lines in command_lines}) == len(command_lines)


def test_bayes_sweep_stops_a_poor_run_early_by_hyperband():
    """The bayes file's early_terminate block, by W&B's own logic: a run whose in-training accuracy stays below the
    finished runs' at the same logged points is stopped; the finished ones are not."""
    sweep = yaml.safe_load((REPO / "sweeps" / "lora_hparams_bayes.yaml").read_text())
    assert sweep["method"] == "bayes" and sweep["early_terminate"]["type"] == "hyperband"
    metric = sweep["metric"]["name"]
    runs: list = []
    for i in range(3):
        run = sweeps.next_run(sweep, runs)
        run.name, run.state = f"run-{i}", sweeps.RunState.finished
        run.history = [{metric: 0.1 * k + 0.05 * i} for k in range(1, 7)]
        run.summary_metrics = run.history[-1]
        runs.append(run)
    poor = sweeps.next_run(sweep, runs)
    poor.name, poor.state, poor.history = "poor", sweeps.RunState.running, [{metric: 0.0}] * 3
    assert [run.name for run in sweeps.stop_runs(sweep, [*runs, poor])] == ["poor"]


def test_a_finished_cell_is_recognised_without_importing_transformers_or_wandb():
    """Re-running a finished sweep checks each cell's config and `medtune status` reads each cell's metrics.jsonl:
    neither pays for importing transformers or wandb (seconds each; a finished 2-cell re-run took 4.3 s, now 1.7 s)."""
    code = (
        "import sys; from helpers import compose; from medtune.config import to_train_config; "
        "from medtune.tracking import read_metrics_log; to_train_config(compose('train', 'tuning=qlora')); "
        "print(sorted(m for m in ('transformers', 'wandb', 'torch') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO / "tests", capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
