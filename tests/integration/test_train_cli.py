"""The real train.py as a subprocess: W&B records, results, resume after SIGKILL, bad input, multirun."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medtune.run_dir import RESOLVED_CONFIG
from medtune.tracking import read_metrics_log

from helpers import kill_script_when, run_script, run_script_reporting_torch, train_job
from wandb_records import offline_runs

# The first 16 training records (and 1 held out) of the demo's 392: these tests check runs, not what they learn.
FAST = ["eval.at_end=false", "trainer.logging_steps=2", "trainer.save_steps=1000", "dataset.limit=16"]


def test_train_run_logs_to_wandb_and_writes_results(trained_run):
    run_dir, proc = trained_run
    tmp_path = run_dir.parent  # the cwd it ran in
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The console: the progress bar, no Trainer dict, no warning of any library, the closing summary.
    assert "train: 100%" in proc.stderr and "6/6" in proc.stderr
    assert not re.search(r"Warning\b|\[WARNING\]", proc.stderr + proc.stdout), proc.stderr[-3000:]
    assert "{'loss'" not in proc.stdout
    sync_line = re.search(r"wandb sync (\S+)", proc.stdout)
    assert "McNemar p =" in proc.stdout and sync_line and Path(sync_line[1]).parent == run_dir / "wandb"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["train/global_step"] == 6
    assert json.loads((run_dir / "run_status.json").read_text())["status"] == "finished"
    assert (run_dir / "model" / "adapter_model.safetensors").exists()
    assert (run_dir / "model" / "tokenizer.json").exists()
    [wb] = offline_runs(run_dir)
    assert wb.exit_code == 0 and wb.run_id == results["wandb_run_id"]
    assert {"tiny_gptneox", "lora", "quant-none", "demo"} <= set(wb.tags) and wb.group == "demo"
    assert wb.config["adapter"]["method"] == "lora" and wb.config["trainer"]["max_steps"] == 6
    logged = set().union(*(row.keys() for row in wb.history))
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "perf/tokens_per_s", "memory/peak_rss_mb"} <= logged
    for key in ("params/trainable", "params/trainable_pct", "perf/train_runtime_s", "eval/loss"):
        assert wb.summary[key] == pytest.approx(results[key])
    assert 0 < results["params/trainable_pct"] < 50  # LoRA: a fraction of the weights train
    # Lineage: the run used its data and its QA suite, and logged the adapter with what produced it.
    assert [a.name for a in wb.used("dataset")] == ["demo-training-data", "eval-demo"]
    assert all(a.entries[name].startswith("file://") for a in wb.used("dataset") for name in a.entries)  # no copy
    [model] = wb.logged("model")
    assert model.name == results["wandb/model_artifact"] == "tiny_gptneox-lora-none"
    assert model.metadata["steps"] == 6 and model.metadata["method"] == "lora"
    assert model.metadata["eval/demo/accuracy"] == pytest.approx(results["eval/demo/accuracy"])
    assert "adapter_model.safetensors" in model.entries and model.metadata["stored_as"] == "copy"
    assert [a.name for a in wb.logged("results")] == [results["wandb/results_artifact"]]
    # One x-axis for train/* and eval/*; every logged figure also in metrics.jsonl.
    assert wb.step_metrics["train/*"] == wb.step_metrics["eval/*"] == "train/global_step"
    rows = read_metrics_log(run_dir / "metrics.jsonl")
    assert [r["train/global_step"] for r in rows if "train/grad_norm" in r] == [2, 4, 6]
    assert any("eval/demo/base_accuracy" in r for r in rows) and any("eval/demo/accuracy" in r for r in rows)
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "wandb").exists()  # nothing in the CWD


def test_killed_run_resumes_to_the_same_final_step_and_wandb_run(tmp_path, tiny_models, compose_config, capsys):
    """…and once finished, a resume with a changed config is refused (that check comes before "finished")."""
    run_dir = tmp_path / "run"
    args = ["trainer.max_steps=30", "trainer.save_steps=5", "eval.at_end=false", "trainer.logging_steps=5", FAST[-1]]
    checkpoint = run_dir / "checkpoints" / "checkpoint-10"  # once it exists, checkpoint-5 is complete
    kill_script_when("train.py", *args, f"hydra.run.dir={run_dir}", cwd=tmp_path, ready=checkpoint.exists)
    assert not (run_dir / "results.json").exists()
    assert json.loads((run_dir / "run_status.json").read_text())["status"] == "running"  # never "finished"

    resumed = run_script("train.py", *args, f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["train/global_step"] == 30
    first, second = offline_runs(run_dir)
    assert first.run_id == second.run_id == results["wandb_run_id"]
    resumed_steps = [row["train/global_step"] for row in second.history if "train/grad_norm" in row]
    # Continued from a checkpoint (5, or 10 if its save had finished before the kill), not from scratch (step 5).
    assert resumed_steps and min(resumed_steps) > 5
    assert second.exit_code == 0
    # metrics.jsonl kept the killed attempt's history (its W&B file may not have) and the resumed one appended.
    logged = [r["train/global_step"] for r in read_metrics_log(run_dir / "metrics.jsonl") if "train/grad_norm" in r]
    assert set(range(5, 31, 5)) <= set(logged) and logged[0] == 5 and logged[-1] == 30  # 5: first attempt only

    # Resumed again, in-process through train.py's job: finished, so nothing to redo; a changed config is refused.
    again = train_job(compose_config("train", *args, f"resume={run_dir}"), run_dir)
    assert again == results and len(offline_runs(run_dir)) == 2
    changed = [arg.replace("max_steps=30", "max_steps=40") for arg in args]
    with pytest.raises(SystemExit) as refused:
        train_job(compose_config("train", *changed, f"resume={run_dir}"), run_dir)
    assert refused.value.code == 2 and "trainer.max_steps" in capsys.readouterr().err


def test_bad_dataset_stops_before_training_with_one_clear_line(tmp_path, tiny_models):
    """The exit status and the one line of the real script, before torch is imported (the tiny base is built); the
    other bad datasets (and an unloadable base model) go through the same `run_job` in-process:
    unit/test_first_contact.py."""
    records = tmp_path / "records.jsonl"
    records.write_text('{"instruction": "q", "output": "a"}\n{"instruction": "q", "output"\n')
    run_dir = tmp_path / "run"
    overrides = ["dataset=jsonl", f"dataset.path={records}", f"hydra.run.dir={run_dir}"]
    proc = run_script_reporting_torch("train.py", *overrides, cwd=tmp_path)
    assert proc.returncode == 2
    assert "records.jsonl:2: malformed JSON" in proc.stderr and "Traceback" not in proc.stderr
    assert "torch imported: False" in proc.stdout
    assert not (run_dir / "results.json").exists() and not (run_dir / "wandb").exists()


def test_a_folder_the_user_owns_is_never_replaced_by_a_tiny_model(tmp_path: Path, cache_dir: Path):
    mine = tmp_path / "my-model"
    mine.mkdir()
    (mine / "config.json").write_text("{}")
    proc = run_script("train.py", f"base_model.path={mine}", f"cache_dir={cache_dir}", cwd=tmp_path)
    assert proc.returncode == 2 and "holds files medtune did not create" in proc.stderr
    assert [p.name for p in mine.iterdir()] == ["config.json"]
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob(RESOLVED_CONFIG))


def test_invalid_pair_fails_at_composition_before_loading(tmp_path):
    proc = run_script("train.py", "adapter=full", "quantization=nf4", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2 and "adapter=full cannot train quantization=nf4" in proc.stderr


def test_a_chat_template_run_trains_and_asks_its_questions_through_the_template(
    tmp_path, tiny_chat_models, compose_config
):
    """Issue 21's bar on tiny Qwen3: the run finishes and every QA prompt carries the template's turn markers, the
    generation prompt last (the label masks themselves: unit/test_chat.py). In-process through train.py's job: what
    is checked here is in the run dir, and the script's own exit and console are the other tests' here."""
    run_dir = tmp_path / "run"
    chat = ["base_model=tiny_qwen3", "dataset.prompt_template=chat", "trainer.max_steps=2", "eval.limit=2"]
    results = train_job(compose_config("train", *chat, *FAST[1:]), run_dir)
    assert results is not None and results["train/global_step"] == 2
    for scored in ("base", "tuned"):
        rows = [json.loads(line) for line in (run_dir / "eval" / scored / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 2
        assert all(r["prompt"].startswith("<|im_start|>user\n") for r in rows)
        assert all(r["prompt"].endswith("<|im_end|>\n<|im_start|>assistant\n") for r in rows)
    assert "chat_template: true" in (run_dir / RESOLVED_CONFIG).read_text()  # scored as trained, and it says so
    assert (run_dir / "model" / "chat_template.jinja").exists()  # the adapter's tokenizer keeps the template


def test_two_by_two_multirun_gives_four_finished_wandb_runs(tmp_path, tiny_models):
    sweep = tmp_path / "sweep"
    proc = run_script(
        "train.py",
        "-m",
        "base_model=tiny_gptneox,tiny_llama",
        "quantization=none,nf4",
        "trainer.max_steps=2",
        *FAST,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    job_dirs = sorted(p.parent for p in sweep.glob("*/results.json"))
    assert len(job_dirs) == 4
    runs = [run for job in job_dirs for run in offline_runs(job)]
    assert len(runs) == 4 and len({r.run_id for r in runs}) == 4
    assert all(r.exit_code == 0 for r in runs)
    combos = {(r.config["base_model"]["name"], r.config["quantization"]["mode"]) for r in runs}
    assert combos == {(b, q) for b in ("tiny_gptneox", "tiny_llama") for q in ("none", "nf4")}
