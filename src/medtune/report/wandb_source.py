"""The W&B source: a project's (or one sweep's) runs read as run records through the public API (online)."""

from __future__ import annotations

import json
from typing import Any

from medtune.metric_keys import BASE_PREFIX, qa_key
from medtune.report.records import RunRecord, record_from_config
from medtune.run_dir import RunState


def collect_wandb(project: str, sweep: str | None) -> list[RunRecord]:
    """Runs of a W&B project (or one sweep of it) through the public API: online only."""
    import wandb

    api = wandb.Api()
    runs = api.sweep(f"{project}/{sweep}").runs if sweep else api.runs(project)
    return [_wandb_record(run) for run in runs if {"base_model", "adapter", "trainer", "eval"} <= run.config.keys()]


WANDB_STATES = {"finished": "finished", "running": "running", "preempted": "preempted"}  # else: failed


def _wandb_record(run: Any) -> RunRecord:
    from datetime import datetime

    results = dict(run.summary_metrics)
    suite = run.config["eval"]["suite"]
    status = WANDB_STATES.get(run.state, "failed")
    return record_from_config(
        run.config,
        source=f"wandb:{'/'.join(run.path)}",
        status=status,
        error="" if status != RunState.failed else f"W&B state {run.state}",
        results=results,
        base_correct=_wandb_correct(run, results.get(qa_key(suite, "predictions", BASE_PREFIX))),
        tuned_correct=_wandb_correct(run, results.get(qa_key(suite, "predictions"))),
        started=datetime.fromisoformat(run.created_at.replace("Z", "+00:00")).timestamp(),
    )


def _wandb_correct(run: Any, table_ref: Any) -> dict[str, bool] | None:
    """problem_id → correct from a predictions wandb.Table in the run's summary (downloaded JSON)."""
    import tempfile

    if not isinstance(table_ref, dict) or "path" not in table_ref:
        return None
    with tempfile.TemporaryDirectory() as tmp, run.file(table_ref["path"]).download(root=tmp) as handle:
        table = json.load(handle)
    id_col, correct_col = table["columns"].index("problem_id"), table["columns"].index("correct")
    return {str(row[id_col]): bool(row[correct_col]) for row in table["data"]}
