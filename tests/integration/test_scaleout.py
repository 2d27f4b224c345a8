"""Scale-out through existing engines: accelerate multi-process training and Hydra's submitit launcher."""

from __future__ import annotations

import json

from helpers import REPO, run_module, run_script
from wandb_records import offline_runs

FAST = ["trainer.max_steps=4", "eval.at_end=false", "trainer.logging_steps=2", "trainer.save_steps=1000"]
FAST += ["dataset.limit=16"]  # 16 of the demo's 392 training records: these tests check processes, not learning
LAUNCH = ["--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def test_accelerate_two_processes_train_one_model_with_one_wandb_run(tmp_path, tiny_models):
    run_dir = tmp_path / "ddp"
    proc = run_module(
        "accelerate.commands.launch", *LAUNCH, str(REPO / "train.py"), *FAST, f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["train/global_step"] == 4
    [wb] = offline_runs(run_dir)  # the second process tracked nothing
    assert wb.exit_code == 0 and wb.run_id == results["wandb_run_id"]
    assert (run_dir / "model" / "adapter_model.safetensors").exists()
    saved = [p for p in tmp_path.rglob("adapter_model.safetensors") if "checkpoints" not in p.parts]
    assert saved == [run_dir / "model" / "adapter_model.safetensors"]  # written once, by the main process
    # Each of the 2 processes saw batch_size examples per step.
    assert results["train/tokens_seen"] > 0


def test_submitit_local_launcher_runs_a_two_job_multirun(tmp_path, tiny_models):
    sweep = tmp_path / "sweep"
    proc = run_script(
        "train.py", "-m", "hydra/launcher=local", "tuning=untuned,lora", *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    statuses = [json.loads(p.read_text())["status"] for p in sweep.glob("*/run_status.json")]
    assert statuses == ["finished", "finished"]
    assert len(list(sweep.glob(".submitit/*/*_submitted.pkl"))) == 2  # really went through submitit
    steps = {json.loads(p.read_text()).get("train/global_step", 0) for p in sweep.glob("*/results.json")}
    assert steps == {0, 4}  # the untuned cell trains nothing, the LoRA cell 4 steps


def test_slurm_launcher_config_composes_for_the_cluster(tmp_path):
    proc = run_script(
        "train.py", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "submitit_launcher.SlurmLauncher" in proc.stdout and "gpus_per_node: 1" in proc.stdout
