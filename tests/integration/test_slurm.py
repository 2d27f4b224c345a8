"""Hydra's SLURM launcher against a real one-node cluster (scripts/slurm_one_node.sh; .ci/run starts it).

Skipped where no cluster answers; under CI=true a missing cluster fails instead, like the browser test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from helpers import run_script
from wandb_records import offline_runs

SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.cpus_per_task=1",
]
FAST = ["trainer.max_steps=4", "eval.at_end=false", "trainer.logging_steps=2", "trainer.save_steps=1000"]


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    """A SLURM controller with an idle node, or a skip (a failure under CI=true)."""
    answer = None
    if shutil.which("sinfo"):
        answer = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if answer is None or answer.returncode != 0 or not answer.stdout.strip():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no SLURM cluster answers: .ci/run must run scripts/slurm_one_node.sh")
        pytest.skip("no SLURM cluster answers (bash scripts/slurm_one_node.sh starts one)")


def test_two_cell_matrix_runs_as_slurm_jobs(tmp_path, tiny_models, slurm_cluster):
    sweep = tmp_path / "sweep"
    proc = run_script(
        "train.py", "-m", *SLURM, "tuning=untuned,lora", *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    statuses = sorted(json.loads(p.read_text())["status"] for p in sweep.glob("*/run_status.json"))
    assert statuses == ["finished", "finished"]
    submissions = list(sweep.glob(".submitit/*/*_submission.sh"))
    assert submissions and "#SBATCH --partition=debug" in submissions[0].read_text()  # really went through sbatch
    steps = {json.loads(p.read_text()).get("train/global_step", 0) for p in sweep.glob("*/results.json")}
    assert steps == {0, 4}
    assert "Bypassing sacct" not in proc.stdout + proc.stderr  # no accounting here: squeue follows the jobs
    assert "job states come from squeue" in proc.stdout + proc.stderr  # ... and the launcher says so once
    for cell in (p.parent for p in sweep.glob("*/run_status.json")):
        [wb] = offline_runs(cell)
        assert {"tuning", "seed", "max_steps"} <= wb.config.keys()  # the matrix axes, top-level for W&B's group-by
        assert wb.config["max_steps"] == 4 and wb.name.endswith(f"-4-seed{wb.config['seed']}")
