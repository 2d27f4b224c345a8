"""Hydra's SLURM launcher against a real one-node cluster (scripts/slurm_one_node.sh; .ci/run starts it).

Skipped where no cluster answers; under CI=true a missing cluster fails instead, like the browser test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from medtune.tracking import STEP_METRIC, read_metrics_log

from helpers import REPO, run_script, script_env
from wandb_records import offline_runs

SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.cpus_per_task=1",
]
REQUEUED = ["trainer.max_steps=80", "eval.at_end=false", "trainer.logging_steps=1", "trainer.save_steps=1000"]
FAST = ["trainer.max_steps=4", "eval.at_end=false", "trainer.logging_steps=2", "trainer.save_steps=1000"]
FAST += ["dataset.limit=16"]  # 16 of the demo's 392 training records: these tests check the jobs, not learning


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


def test_scontrol_requeue_resumes_the_cell_from_its_checkpoint_in_its_wandb_run(tmp_path, tiny_models, slurm_cluster):
    """SLURM sends the running cell SIGTERM (W&B's service too), holds it, starts it again: the cell continues from
    the checkpoint saved at the signal, in the same W&B run, and the sweep exits 0."""
    sweep = tmp_path / "sweep"
    argv = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        *SLURM,
        "trainer.seed=1",
        *REQUEUED,
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300  # a guard, not a speed check: a loaded 2-core machine starts the job slowly
    while not any(
        row.get(STEP_METRIC, 0) >= 5 for log in sweep.glob("*/metrics.jsonl") for row in read_metrics_log(log)
    ):
        assert proc.poll() is None, f"the sweep ended before its cell reached step 5: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "the cell did not reach step 5 within 300 s"
        time.sleep(0.2)
    (run_dir,) = [log.parent for log in sweep.glob("*/metrics.jsonl")]
    job = json.loads((run_dir / "run_status.json").read_text())["slurm_job_id"]
    subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
    while json.loads((run_dir / "run_status.json").read_text())["status"] != "preempted":
        assert time.monotonic() < deadline + 60, "the requeued cell never wrote preempted"
        time.sleep(0.2)
    # SLURM holds a requeued job for a while (its EligibleTime, ~2 min); once it is pending, let it start now.
    while _state(job) != "PENDING":
        assert time.monotonic() < deadline + 120, f"job {job} was not requeued (state {_state(job)})"
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, timeout=30)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-4000:]
    checkpoint = min(int(p.name.rsplit("-", 1)[1]) for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    results = json.loads((run_dir / "results.json").read_text())
    assert results["train/global_step"] == 80 and 5 <= checkpoint < 80  # saved at the signal, then the full step count
    steps = [row[STEP_METRIC] for row in read_metrics_log(run_dir / "metrics.jsonl") if "train/loss" in row]
    assert steps == sorted(set(steps)) and steps[-1] == 80  # no step twice
    runs = offline_runs(run_dir)
    assert len(runs) == 2 and {wb.run_id for wb in runs} == {results["wandb_run_id"]}  # one W&B run, resumed
    history = [row[STEP_METRIC] for wb in runs for row in wb.history if "train/loss" in row]
    assert len(history) == len(set(history))


def _state(job: str) -> str:
    shown = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
    return shown.stdout.strip()
