"""Every W&B sweep file expands, by W&B's own sweep logic, into command lines Hydra composes and validates."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from medtune.config import to_train_config

from helpers import REPO

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the sweeps package still uses pydantic-v1 config names
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    import sweeps

SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))
RANDOM_SAMPLES = 6


def expand(sweep: dict) -> list[list[str]]:
    """The Hydra override lists the W&B agent would pass (${args_no_hyphens}), grid exhausted or random sampled."""
    runs: list = []
    limit = None if sweep["method"] == "grid" else RANDOM_SAMPLES
    while limit is None or len(runs) < limit:
        proposed = sweeps.next_run(sweep, runs)
        if proposed is None:
            break
        proposed.state = sweeps.RunState.finished
        runs.append(proposed)
    return [create_sweep_command_args({"args": run.config})["args_no_hyphens"] for run in runs]


def test_there_are_sweep_files():
    assert {p.stem for p in SWEEP_FILES} >= {"demo_matrix", "jmedlora_matrix", "lora_hparams"}


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_sweep_expands_to_valid_hydra_overrides(compose_config, path: Path):
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
        assert len(command_lines) == RANDOM_SAMPLES
    for overrides in command_lines:
        tc = to_train_config(compose_config("train", *overrides))  # unknown keys or bad values fail here
        assert sweep["metric"]["name"] == f"eval/{tc.eval.suite}/accuracy"  # the key train.py logs
    assert len({tuple(lines) for lines in command_lines}) == len(command_lines)
