"""The study's matrix in miniature: every cell of experiment=demo_matrix runs, and the report shows each one.

The sweeps run train.py in a forked child (helpers.fork_script: the script as __main__, its own argv, exit status and
output, without a fresh interpreter's imports); the finished matrix's re-run is a fresh `python train.py` process.
The report and `medtune.sweep status` run through the same `main` their commands call (as processes: test_readme,
test_search_cli, test_durable_sweep)."""

from __future__ import annotations

import csv
import json

import yaml

from medtune.run_dir import ADAPTER_METHOD_FILE

from helpers import fork_script, run_script
from wandb_records import offline_runs

SMALL = ["trainer.max_steps=3", "trainer.logging_steps=1", "trainer.save_steps=1000", "eval.limit=12"]


def report_rows(sweep) -> list[dict]:
    """`python -m medtune.report <sweep> --wandb-mode offline` through its main (a user error would exit 2)."""
    from medtune.report.command import main as report_main

    report_main([str(sweep), "--wandb-mode", "offline", "--n-boot", "200"])
    with (sweep / "report" / "report.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_demo_matrix_runs_every_cell_and_the_report_shows_them(tmp_path, tiny_models, capsys):
    sweep = tmp_path / "matrix"
    proc = fork_script("train.py", "-m", "experiment=demo_matrix", *SMALL, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert len(list(sweep.glob("*/results.json"))) == 9
    runs = [run for job in sweep.glob("*/") for run in offline_runs(job)]
    assert len({r.run_id for r in runs}) == 9 and all(r.exit_code == 0 for r in runs)
    rows = report_rows(sweep)
    cells = {(row["base_model"], row["tuning"]): row for row in rows}
    bases, methods = ("tiny_gptneox", "tiny_llama", "tiny_medcalm"), ("untuned", "lora", "qlora")
    assert set(cells) == {(b, m) for b in bases for m in methods}
    assert all(row["status"] == "finished" and 0 <= float(row["accuracy"]) <= 1 for row in rows)
    assert all(row["p_value"] != "" for (_, method), row in cells.items() if method != "untuned")
    assert (sweep / "report" / "report.md").read_text().count("tiny_medcalm") >= 1

    # The identical command again: every cell is finished, so nothing trains and no W&B run starts.
    again = run_script("train.py", "-m", "experiment=demo_matrix", *SMALL, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert again.returncode == 0 and "sweep 9 finished" in again.stdout, again.stderr[-3000:]
    cells = [job for job in sweep.glob("*/") if (job / "results.json").exists()]  # not report/, the report's run
    assert sorted(run.run_id for job in cells for run in offline_runs(job)) == sorted(r.run_id for r in runs)
    from medtune.sweep import main as sweep_main

    capsys.readouterr()
    assert sweep_main(["status", str(sweep)]) == 0 and "9 of 9 cells done" in capsys.readouterr().out


def test_a_failing_cell_is_recorded_and_the_others_continue(tmp_path, tiny_models):
    """GPT-NeoX has query_key_value, Llama does not: the Llama cell fails after its W&B run started."""
    sweep = tmp_path / "sweep"
    proc = fork_script(
        "train.py",
        "-m",
        "base_model=tiny_gptneox,tiny_llama",
        "adapter.target_modules=[query_key_value]",
        *SMALL,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "1 cell(s) did not finish" in proc.stderr and "Traceback" not in proc.stderr
    statuses = sorted(json.loads(path.read_text())["status"] for path in sweep.glob("*/run_status.json"))
    assert statuses == ["failed", "finished"]
    exit_codes = sorted(run.exit_code for job in sweep.glob("*/") for run in offline_runs(job))
    assert exit_codes == [0, 1]  # the failed cell is marked failed in W&B
    rows = {row["base_model"]: row for row in report_rows(sweep)}
    assert rows["tiny_gptneox"]["status"] == "finished" and rows["tiny_llama"]["status"] == "failed"
    [report_run] = offline_runs(sweep / "report")  # the report run uses the results it read: the finished cell's
    [finished] = [json.loads(path.read_text()) for path in sweep.glob("*/results.json")]
    assert [a.name for a in report_run.used("results")] == [finished["wandb/results_artifact"]]


def test_seeds_are_a_multirun_axis_and_the_report_groups_them(tmp_path, tiny_models):
    """`-m ... trainer.seed=1,2,3` on the default sweep dir: three runs, one report cell with the seed columns."""
    proc = fork_script("train.py", "-m", "trainer.seed=1,2,3", *SMALL, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    configs = [yaml.safe_load(path.read_text()) for path in sweep.glob("*/resolved_config.yaml")]
    assert sorted(config["trainer"]["seed"] for config in configs) == [1, 2, 3]
    rows = {row["tuning"]: row for row in report_rows(sweep)}
    assert set(rows) == {"untuned", "lora"} and rows["untuned"]["source"].endswith("(eval/base)")  # its base scoring
    row = rows["lora"]
    assert row["n_seeds"] == "3" and row["paired_test"] == "sign-flip" and row["seed_flips"] != ""
    assert len(row["seed_accuracies"].split()) == 3 and row["accuracy_std"] != ""


def test_a_peft_methods_matrix_gives_one_report_column_each(tmp_path, tiny_models):
    """issue 21's bar: `tuning=lora,rslora,pissa,loftq,vera` on a tiny base finishes, one report column each, each
    adapter folder naming its method."""
    sweep, methods = tmp_path / "peft", ("lora", "rslora", "pissa", "loftq", "vera")
    short = ["trainer.max_steps=2", "trainer.batch_size=2", "trainer.logging_steps=1", "eval.limit=4"]
    overrides = ["experiment=demo_peft_matrix", f"tuning={','.join(methods)}", *short, "trainer.save_steps=1000"]
    proc = fork_script("train.py", "-m", *overrides, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0 and "sweep 5 finished" in proc.stdout, proc.stderr[-4000:]
    markers = [json.loads(path.read_text()) for path in sweep.glob(f"*/model/{ADAPTER_METHOD_FILE}")]
    assert sorted(marker["method"] for marker in markers) == sorted(methods)
    untuned, *rows = report_rows(sweep)  # the base as scored before tuning comes first
    assert untuned["tuning"] == "untuned" and untuned["source"].endswith("(eval/base)")
    assert [row["tuning"] for row in rows] == list(methods)  # the table's column order
    assert all(row["status"] == "finished" and row["p_value"] != "" for row in rows)
    header = next(line for line in (sweep / "report" / "report.md").read_text().splitlines() if "base model" in line)
    assert all(f"| {method} · 2 steps |" in header for method in methods)
