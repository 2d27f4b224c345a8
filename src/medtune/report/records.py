"""Run records: one train.py or evaluate.py run dir read into what the report needs (config, status,
results, per-question correctness, learning curve), with no network."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medtune.config import tuning_method
from medtune.errors import ConfigError, DataError
from medtune.metric_keys import qa_key
from medtune.run_dir import (
    EXPORT_RECORD,
    METRICS_FILE,
    METRICS_LOG,
    PREDICTIONS,
    PREDICTIONS_FILE,
    RESOLVED_CONFIG,
    RESULTS_FILE,
    STATUS_FILE,
    RunState,
    effective_state,
    read_correct,
    read_status,
)
from medtune.tracking import read_metrics_log
from medtune.tuning import UNTUNED

HYDRA_CONFIG = ".hydra/config.yaml"  # a job Hydra started, even one that stopped before training wrote anything
NOT_STARTED = "not started"


@dataclass
class RunRecord:
    """One train.py run as the report needs it, read from a run dir or from the W&B API."""

    source: str  # run dir, or wandb:<entity>/<project>/<id>
    base_model: str
    method: str  # tuning method: a medtune.tuning.TUNING_METHODS name (untuned, lora, qlora, ...) or e.g. lora-int8
    steps: int  # trainer.max_steps (0 for untuned: nothing is trained)
    suite: str
    stage: str
    status: str  # finished | failed | running | not started
    seed: int = 0  # trainer.seed: runs of one cell with different seeds are replicates
    error: str = ""
    results: dict[str, Any] = field(default_factory=dict)
    base_correct: dict[str, bool] | None = None  # problem_id → correct, before tuning
    tuned_correct: dict[str, bool] | None = None  # after tuning (None for untuned runs)
    started: float = 0.0  # seconds since the epoch; the latest run of a cell wins
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl rows (local runs)

    @property
    def column(self) -> tuple[str, int]:
        return self.method, self.steps

    @property
    def untuned(self) -> bool:
        return self.method.startswith(UNTUNED)


CONFIG_KEYS = ("base_model.name", "adapter.method", "quantization.mode", "trainer.max_steps", "eval.suite")


def record_from_config(config: dict[str, Any], **fields: Any) -> RunRecord:
    """Place a run in the matrix from its (resolved or composed) config; `fields` are RunRecord's others."""
    name, adapter, quantization, max_steps, suite = (
        _config_value(config, key, fields["source"]) for key in CONFIG_KEYS
    )
    method = tuning_method(adapter, quantization)
    return RunRecord(
        base_model=str(name),
        method=method,
        steps=0 if method.startswith(UNTUNED) else int(max_steps),
        suite=str(suite),
        stage=str(config.get("stage", "sft")),
        seed=int((config.get("trainer") or {}).get("seed", 0)),
        **fields,
    )


def _config_value(config: dict[str, Any], dotted: str, source: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise DataError("not a train.py run config: a key the report needs is missing", path=source, field=dotted)
        value = value[part]
    return value


def find_run_dirs(root: Path) -> list[Path]:
    """The run dirs at or below `root` (a run dir, a multirun dir, or any folder of them)."""
    if is_run_dir(root):
        return [root]
    return [run for child in sorted(p for p in root.iterdir() if p.is_dir()) for run in find_run_dirs(child)]


def is_run_dir(path: Path) -> bool:
    return (path / RESOLVED_CONFIG).is_file() or (path / HYDRA_CONFIG).is_file()


def collect_local(paths: Sequence[Path]) -> list[RunRecord]:
    """Every run under the given dirs, from the files train.py writes (no network)."""
    records = []
    for path in paths:
        if not path.is_dir():
            raise ConfigError(f"{path} is not a directory (expected a multirun dir or a train.py run dir).")
        run_dirs = find_run_dirs(path)
        if not run_dirs:
            raise ConfigError(f"{path} holds no train.py runs (no {RESOLVED_CONFIG} or {HYDRA_CONFIG} below it).")
        records += [read_run_dir(run_dir) for run_dir in run_dirs]
    return records


def read_run_dir(run_dir: Path) -> RunRecord:
    config_path = run_dir / RESOLVED_CONFIG
    if not config_path.is_file():  # Hydra started the job, but train.py stopped before writing anything
        config_path = run_dir / HYDRA_CONFIG
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    status, error = read_run_state(run_dir)
    if "backend" in config:
        return read_evaluation_dir(run_dir, config, status, error, config_path.stat().st_mtime)
    results_path = run_dir / RESULTS_FILE
    return record_from_config(
        config,
        source=str(run_dir),
        status=status,
        error=error,
        results=json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {},
        base_correct=read_correct(run_dir / PREDICTIONS["base"]),
        tuned_correct=read_correct(run_dir / PREDICTIONS["tuned"]),
        started=config_path.stat().st_mtime,
        history=read_metrics_log(run_dir / METRICS_LOG),
    )


def read_evaluation_dir(run_dir: Path, config: dict[str, Any], status: str, error: str, started: float) -> RunRecord:
    """An evaluate.py run as a cell: an API model is a row of its own (column `api`); a local model sits where its
    train.py run (run_dir=) or its composed base/adapter place it. A failed evaluation is a failed cell, never 0.0."""
    suite = str(_config_value(config, "eval.suite", str(run_dir)))
    metrics_path = run_dir / METRICS_FILE
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    results = {qa_key(suite, k): v for k, v in metrics.items()} if status == RunState.finished else {}
    correct = read_correct(run_dir / PREDICTIONS_FILE) if status == RunState.finished else None
    if config["backend"] == "openai":
        row, method, steps = f"api:{config['openai']['model']}", "api", 0
    else:
        trained = Path(str(config.get("run_dir") or "")) / RESOLVED_CONFIG
        placed = (
            yaml.safe_load(trained.read_text(encoding="utf-8"))
            if config.get("run_dir") and trained.is_file()
            else _exported_from(config) or config
        )
        base = record_from_config(
            placed | {"trainer": placed.get("trainer", {"max_steps": 0})}, source=str(run_dir), status=status
        )
        row, method, steps = base.base_model, base.method, base.steps
    untuned = method.startswith(UNTUNED)
    return RunRecord(
        source=str(run_dir),
        base_model=row,
        method=method,
        steps=steps,
        suite=suite,
        stage="sft",
        status=status,
        error=error,
        results=results,
        base_correct=correct if untuned else None,
        tuned_correct=None if untuned else correct,
        started=started,
    )


def _exported_from(config: dict[str, Any]) -> dict[str, Any] | None:
    """An evaluate.py run on a `medtune export` folder sits in the column of the run it was exported from (its
    tuning and steps), in a row of its own: the folder's name, which evaluate.py gave the base."""
    base = config.get("base_model") or {}
    record = Path(str(base.get("path", ""))).expanduser() / EXPORT_RECORD
    if not record.is_file():
        return None
    source = json.loads(record.read_text(encoding="utf-8"))["config"]
    return source | {"base_model": source["base_model"] | {"name": base["name"]}}


def read_run_state(run_dir: Path) -> tuple[str, str]:
    """(state, error) as `medtune.sweep status` shows it (a killed run reads preempted: the same command continues
    it); without run_status.json the job stopped before training began: its log says why."""
    status = read_status(run_dir)
    if status is not None:
        state = effective_state(run_dir)
        if state == RunState.running:
            return str(state), status.get("error") or "still running"
        if state == RunState.preempted and not status.get("error"):
            return str(state), "killed (it never wrote a final status); the same command continues it"
        return str(state), status.get("error", "")
    logs = sorted(run_dir.glob("*.log"))
    last_lines = [line for log in logs for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return NOT_STARTED, last_lines[-1].strip() if last_lines else f"no {STATUS_FILE}: see the job's output"
