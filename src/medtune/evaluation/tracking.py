"""An evaluation in W&B: its own run (evaluate.py), and the summary, predictions table and per-category chart
that evaluate.py and train.py's scoring both log (`eval/<suite>/<prefix><metric>`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import wandb

from medtune.config import to_plain_dict
from medtune.evaluation.config import EvaluateConfig
from medtune.jsonl import read_jsonl_objects
from medtune.metric_keys import qa_key
from medtune.run_dir import METRICS_FILE
from medtune.tracking import start_wandb_run


def start_eval_run(cfg: EvaluateConfig, output_dir: Path) -> Any:
    """The evaluation's W&B run (with wandb.mode=disabled a no-op run, so the code path is the same)."""
    target = (
        cfg.openai.model if cfg.backend == "openai" else Path(cfg.run_dir).name if cfg.run_dir else cfg.base_model.name
    )
    return start_wandb_run(
        cfg.wandb,
        output_dir,
        config=to_plain_dict(cfg),
        tags=["eval", cfg.eval.suite, cfg.backend, cfg.eval.mode],
        group=f"eval-{cfg.eval.suite}",
        name=f"eval-{cfg.eval.suite}-{target}",
        job_type="eval",
    )


def log_failure(run: Any, suite: str, output_dir: Path) -> None:
    """A failed evaluation's counts (never an accuracy) in the W&B summary."""
    path = output_dir / METRICS_FILE
    counts = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    run.summary.update({qa_key(suite, k): v for k, v in counts.items() if k in ("n_questions", "n_failed")})


def log_eval_to_wandb(
    run, suite: str, metrics: dict[str, float], predictions_path: Path | None, prefix: str = "", step: int | None = None
) -> dict[str, float]:
    """Summary `eval/<suite>/<prefix><metric>`, a predictions table and per-category accuracy bars."""
    scalars = {qa_key(suite, name, prefix): value for name, value in metrics.items()}
    logged: dict[str, Any] = dict(scalars)
    if predictions_path is not None and Path(predictions_path).exists():
        rows = [row for _, row in read_jsonl_objects(Path(predictions_path))]  # keeps U+2028 inside a record
        columns: list[str | int] = [
            "problem_id",
            "category",
            "year",
            "response",
            "parsed_text",
            "gold_text",
            "correct",
            "official_correct",
            "unparsed",
            "rotation",
            "gestalt",
        ]
        logged[qa_key(suite, "predictions", prefix)] = wandb.Table(
            columns=columns, data=[[_cell(row.get(str(c))) for c in columns] for row in rows]
        )
    categories = _category_accuracy(metrics)
    if categories:
        table = wandb.Table(columns=["category", "accuracy"], data=sorted(categories.items()))
        title = f"{suite} {prefix}accuracy by category"
        logged[qa_key(suite, "category_accuracy", prefix)] = wandb.plot.bar(table, "category", "accuracy", title=title)
    run.log(logged, step=step)  # step: the training step, when scored inside train.py
    run.summary.update(scalars)
    return scalars


def _cell(value: Any) -> Any:
    return (
        value if value is None or isinstance(value, str | int | float | bool) else json.dumps(value, ensure_ascii=False)
    )


def _category_accuracy(metrics: dict[str, float]) -> dict[str, float]:
    return {
        key.split("/")[1]: value
        for key, value in metrics.items()
        if key.startswith("category/") and key.endswith("/accuracy") and key.count("/") == 2
    }
