"""A sweep that a cluster stops: SIGTERM mid-cell (what `scancel`, `scontrol requeue` and preemption send first), then
the identical command again. (SIGKILL of a single run: test_train_cli.py; a finished matrix re-run: test_matrix.py.)
The signalled sweep is a fresh `python train.py` process; the commands run after it are forked (helpers.fork_script:
the script as __main__ with its own argv, exit status and output, without a fresh interpreter's imports)."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import time

from medtune.tracking import read_metrics_log

from helpers import REPO, fork_script, run_module, script_env
from wandb_records import offline_runs

ARGS = ["trainer.max_steps=30", "trainer.save_steps=1000", "trainer.logging_steps=5", "eval.limit=6"]


def test_sigterm_mid_cell_checkpoints_and_the_same_command_finishes_the_sweep(tmp_path, tiny_models):
    sweep = tmp_path / "sweep"
    command = [sys.executable, str(REPO / "train.py"), "-m", "trainer.seed=1,2", *ARGS, f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(command, cwd=tmp_path, env=script_env(), stderr=subprocess.PIPE, text=True)
    second = sweep / ",".join(sorted([*ARGS, "trainer.seed=2"]))
    deadline = time.monotonic() + 300
    while not any(row.get("train/global_step", 0) >= 10 for row in read_metrics_log(second / "metrics.jsonl")):
        assert proc.poll() is None and time.monotonic() < deadline, "the second cell never reached step 10"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "preempted" in stderr and "Run the same command again" in stderr and "Traceback" not in stderr
    status = json.loads((second / "run_status.json").read_text())
    assert status["status"] == "preempted"
    (stopped_at,) = [int(p.name.rsplit("-", 1)[1]) for p in (second / "checkpoints").glob("checkpoint-*")]
    assert 10 <= stopped_at < 30  # saved at the signal's step (save_steps=1000 would never have saved)
    assert run_module("medtune.sweep", "status", str(sweep), cwd=tmp_path).returncode == 1

    again = fork_script("train.py", *command[2:], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    first = sweep / ",".join(sorted([*ARGS, "trainer.seed=1"]))
    assert len(offline_runs(first)) == 1  # finished: skipped, no new W&B run
    runs = offline_runs(second)
    results = json.loads((second / "results.json").read_text())
    assert results["train/global_step"] == 30 and {run.run_id for run in runs} == {results["wandb_run_id"]}
    resumed = [row["train/global_step"] for row in runs[-1].history if "train/grad_norm" in row]
    assert min(resumed) > stopped_at  # continued from the signal's checkpoint
    wandb_steps = [row["train/global_step"] for run in runs for row in run.history if "train/grad_norm" in row]
    assert sorted(wandb_steps) == list(range(5, 31, 5))  # each step once in the W&B history, across both attempts
    logged = collections.Counter(
        (row["train/global_step"], key)
        for row in read_metrics_log(second / "metrics.jsonl")
        for key in row
        if key not in ("time", "train/global_step")
    )
    assert max(logged.values()) == 1  # ... and in metrics.jsonl
    assert run_module("medtune.sweep", "status", str(sweep), cwd=tmp_path).returncode == 0


def test_the_untuned_column_is_scored_once_per_base_whatever_the_step_count(tmp_path, tiny_models):
    sweep = tmp_path / "sweep"
    proc = fork_script(
        "train.py",
        "-m",
        "tuning=untuned",
        "trainer.max_steps=3,5",
        "eval.limit=6",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    scored, reused = (sweep / f"eval.limit=6,trainer.max_steps={n},tuning=untuned" for n in (3, 5))
    assert len(offline_runs(scored)) == 1 and offline_runs(reused) == []  # one W&B run, one scoring
    first, second = (json.loads((cell / "results.json").read_text()) for cell in (scored, reused))
    assert second["same_as"] == str(scored) and second["objective"] == first["objective"]
    assert (reused / "eval" / "base" / "predictions.jsonl").is_file()  # the report reads the reused cell's answers
