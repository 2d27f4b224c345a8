"""The report's search section on a two-objective study (accuracy ↑, peak memory ↓) laid out as the sweeper leaves it:
the Pareto front's trials with their overrides, its plot, the pruned count, and one W&B run in the trials' group."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import yaml

from medtune.report.command import main
from medtune.run_dir import RESOLVED_CONFIG, RESULTS_FILE, RunState, write_json, write_status
from medtune.search.runner import GROUP_ATTR, N_TRIALS_ATTR, OVERRIDES_ATTR, RUN_DIR_ATTR, tell_from_run_dir
from medtune.search.study import SPACE_ATTR

from wandb_records import finished_offline_runs

OBJECTIVES = ["eval/demo/accuracy", "memory/peak_rss_mb"]
# (accuracy, peak MB) per trial: 0, 1 and 3 are the front (none of them beaten on both); 2 and 4 are dominated
TRIALS = [(0.50, 900.0), (0.70, 1200.0), (0.40, 1300.0), (0.90, 2000.0), (0.60, 2100.0)]


def _config(r: int) -> dict:
    return {
        "base_model": {"name": "tiny_gptneox"},
        "adapter": {"method": "lora", "r": r},
        "quantization": {"mode": "none"},
        "trainer": {"max_steps": 10},
        "eval": {"suite": "demo"},
    }


def _search_dir(sweep: Path) -> optuna.Study:
    study = optuna.create_study(
        storage=f"sqlite:///{sweep / 'optuna.db'}", study_name="search", directions=["maximize", "minimize"]
    )
    fixed = ["trainer.max_steps=10"]
    study.set_user_attr(SPACE_ATTR, {"fixed": fixed, "axes": [], "objective": OBJECTIVES})
    study.set_user_attr(N_TRIALS_ATTR, len(TRIALS))
    study.set_user_attr(GROUP_ATTR, "sweep/search")
    for accuracy, memory in TRIALS:
        trial = study.ask({"adapter.r": optuna.distributions.CategoricalDistribution([4, 8, 16, 32, 64])})
        run_dir = sweep / "search" / f"trial-{trial.number:03d}"
        run_dir.mkdir(parents=True)
        (run_dir / RESOLVED_CONFIG).write_text(yaml.safe_dump(_config(trial.params["adapter.r"])))
        write_json(run_dir / RESULTS_FILE, {OBJECTIVES[0]: accuracy, OBJECTIVES[1]: memory, "train/global_step": 10})
        write_status(run_dir, RunState.finished)
        trial.set_user_attr(RUN_DIR_ATTR, str(run_dir))
        trial.set_user_attr(OVERRIDES_ATTR, [f"adapter.r={trial.params['adapter.r']}"])
        tell_from_run_dir(study, trial.number, run_dir, OBJECTIVES)
    return study


def test_two_objectives_show_the_pareto_front_and_log_one_search_run(tmp_path: Path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    study = _search_dir(sweep)
    main([str(sweep), "--wandb-mode", "offline"])
    markdown = (sweep / "report" / "report.md").read_text(encoding="utf-8")
    front = sorted(t.number for t in study.best_trials)
    assert front == [0, 1, 3]
    section = markdown[markdown.index("## Search `search`") :]
    assert "### Pareto front" in section and "5 of 5 trials done (5 complete)" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "adapter.r=" in line]
    assert sorted(int(row.split("|")[1]) for row in rows) == front
    assert "Parameter importances (fANOVA, eval/demo/accuracy)" in section
    assert (sweep / "report" / "search_pareto_search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![search/search/pareto_front](search_pareto_search.png)" in section
    assert "optuna-dashboard sqlite:///" in capsys.readouterr().out
    (run,) = finished_offline_runs(sweep / "report" / "search" / "search")
    assert run.config["study"] == "search" and run.group == "sweep/search"  # beside its trials' runs
    assert run.summary["search/trials_complete"] == 5
    images = {k.removesuffix("/_type") for row in run.history for k in row if k.endswith("/_type")}
    assert images == {"search/search/history", "search/search/pareto_front", "search/search/importance"}
    assert json.loads((sweep / "search" / "trial-000" / RESULTS_FILE).read_text())[OBJECTIVES[0]] == 0.5
