"""The comparison report: every run of a sweep as the study's matrix, with uncertainty and a paired test.

    python -m medtune.report multirun/2026-01-01/12-00-00-000000          # → that dir's report/
    python -m medtune.report outputs/run_a outputs/run_b --out /tmp/report --wandb-mode disabled
    python -m medtune.report --wandb-project me/medtune --wandb-sweep abc123 --out report/   # online only

Rows are base models, columns tuning method × training steps; each cell holds accuracy with a 95 %
bootstrap CI over questions, exact match, gestalt, peak memory, train time, tokens/s, and the exact
McNemar p-value of the tuned model against the same run's base model before tuning (its
eval/base predictions, so the questions are the same by construction). A cell whose run failed,
is still running (or was killed), or never ran while its combination exists in another row is
shown as such. Output: report.md, report.html (self-contained: opens from disk), report.csv, PNG plots
(learning curves from each run dir's metrics.jsonl), and (offline by default) a W&B run of job_type "report"
holding the table and plots, which uses the results artifact of every run it read.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure

from medtune.cli import exit_on_user_error
from medtune.config import WandbMode, tuning_method
from medtune.errors import ConfigError, DataError
from medtune.jsonl import read_jsonl_objects
from medtune.run_dir import (
    BASE_EVAL_SUBDIR,
    METRICS_FILE,
    METRICS_LOG,
    PREDICTIONS_FILE,
    RESOLVED_CONFIG,
    RESULTS_FILE,
    STATUS_FILE,
    TUNED_EVAL_SUBDIR,
)
from medtune.stats import (
    DEFAULT_N_BOOT,
    PairedResult,
    bootstrap_ci,
    paired_test,
    seed_bootstrap_ci,
    seed_flips,
)
from medtune.tracking import STEP_METRIC, read_metrics_log, resolve_mode

HYDRA_CONFIG = ".hydra/config.yaml"  # a job Hydra started, even one that stopped before training wrote anything
PREDICTIONS = {"base": f"{BASE_EVAL_SUBDIR}/{PREDICTIONS_FILE}", "tuned": f"{TUNED_EVAL_SUBDIR}/{PREDICTIONS_FILE}"}
METHOD_ORDER = ("untuned", "lora", "qlora", "lora-int8", "dora", "full", "api")  # matrix column order
NOT_STARTED = "not started"
MISSING = "missing"
NOT_APPLICABLE = "n/a"  # an API model's row has only the `api` column, and a trained base no `api` cell
EXTRA_METRICS = (  # shown when the run has them (evaluation.scoring.finish_evaluation)
    "n_unparsed",
    "n_excluded",
    "accuracy_norm_chars",
    "accuracy_bytes",
    "accuracy_norm_tokens",
    "consistent_accuracy",
)
CSV_COLUMNS = [
    "suite",
    "base_model",
    "tuning",
    "steps",
    "status",
    "accuracy",
    "ci_low",
    "ci_high",
    "exact_match",
    "gestalt",
    "official_accuracy",
    "n_questions",
    "base_accuracy",
    "n_seeds",
    "seed_accuracies",
    "accuracy_std",
    "seed_flips",
    "paired_test",
    "p_value",
    *EXTRA_METRICS,
    "exam",
    "gains",
    "losses",
    "peak_memory_mb",
    "memory_kind",
    "train_time_s",
    "tokens_per_s",
    "error",
    "source",
]


# ------------------------------------------------------------------------------------------- runs
@dataclass
class RunRecord:
    """One train.py run as the report needs it, read from a run dir or from the W&B API."""

    source: str  # run dir, or wandb:<entity>/<project>/<id>
    base_model: str
    method: str  # tuning method: untuned | lora | qlora | lora-int8 | dora | full | ...
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
        return self.method.startswith("untuned")


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
        steps=0 if method.startswith("untuned") else int(max_steps),
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
    status, error = read_status(run_dir)
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
    results = {f"eval/{suite}/{k}": v for k, v in metrics.items()} if status == "finished" else {}
    correct = read_correct(run_dir / PREDICTIONS_FILE) if status == "finished" else None
    if config["backend"] == "openai":
        row, method, steps = f"api:{config['openai']['model']}", "api", 0
    else:
        trained = Path(str(config.get("run_dir") or "")) / RESOLVED_CONFIG
        placed = (
            yaml.safe_load(trained.read_text(encoding="utf-8"))
            if config.get("run_dir") and trained.is_file()
            else config
        )
        base = record_from_config(
            placed | {"trainer": placed.get("trainer", {"max_steps": 0})}, source=str(run_dir), status=status
        )
        row, method, steps = base.base_model, base.method, base.steps
    untuned = method.startswith("untuned")
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


def _evaluated_model_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config that places a local evaluation: its train.py run's (run_dir=), else its own composed one."""
    trained = Path(str(config.get("run_dir") or "")) / RESOLVED_CONFIG
    placed = (
        yaml.safe_load(trained.read_text(encoding="utf-8")) if config.get("run_dir") and trained.is_file() else config
    )
    return {"trainer": {"max_steps": 0}} | placed


def read_status(run_dir: Path) -> tuple[str, str]:
    """(status, error); without run_status.json the job stopped before training began: its log says why."""
    status_path = run_dir / STATUS_FILE
    if status_path.is_file():
        status = json.loads(status_path.read_text(encoding="utf-8"))
        if status["status"] == "running":
            return "running", status.get("error") or "still running, or killed (it never wrote a final status)"
        return status["status"], status.get("error", "")
    logs = sorted(run_dir.glob("*.log"))
    last_lines = [line for log in logs for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return NOT_STARTED, last_lines[-1].strip() if last_lines else f"no {STATUS_FILE}: see the job's output"


def read_correct(path: Path) -> dict[str, bool] | None:
    """problem_id → correct from an evaluation's predictions.jsonl (None when the file is absent)."""
    if not path.is_file():
        return None
    correct = {}
    for number, row in read_jsonl_objects(path):
        for key in ("problem_id", "correct"):
            if key not in row:
                raise DataError("missing field", path=path, line=number, field=key)
        correct[str(row["problem_id"])] = bool(row["correct"])
    return correct


# ------------------------------------------------------------------------------------------ cells
@dataclass
class Cell:
    """One matrix cell: a run's figures, or why there are none."""

    suite: str
    base_model: str
    method: str
    steps: int
    status: str
    error: str = ""
    source: str = ""
    accuracy: float | None = None
    ci: tuple[float, float] | None = None
    exact_match: float | None = None
    gestalt: float | None = None
    official_accuracy: float | None = None
    n_questions: int | None = None
    n_failed: int | None = None  # questions whose answer could not be read (or whose API call failed)
    base_accuracy: float | None = None
    seeds: list[int] = field(default_factory=list)  # the finished replicates behind the figures
    seed_accuracies: list[float] = field(default_factory=list)
    seed_flips: int | None = None  # questions right in some seeds' runs and wrong in others
    paired: PairedResult | None = None
    peak_memory_mb: float | None = None
    memory_kind: str = ""  # cuda (peak allocated) | rss (process peak resident set)
    train_time_s: float | None = None
    tokens_per_s: float | None = None
    extra: dict[str, float] = field(default_factory=dict)  # EXTRA_METRICS present in the run's results
    exam: str = ""  # per exam year: section points and pass/fail (medtune.metrics.exam_result)

    @property
    def column_label(self) -> str:
        return column_label((self.method, self.steps))

    @property
    def applies(self) -> bool:
        return self.status != NOT_APPLICABLE

    @property
    def needs_attention(self) -> bool:
        """No result, or a result missing some seeds (a finished cell's error lists the seeds that did not finish)."""
        return self.applies and (self.status != "finished" or bool(self.error))

    @property
    def accuracy_std(self) -> float | None:
        """Sample standard deviation of the accuracy over seeds (None with fewer than two)."""
        return float(np.std(self.seed_accuracies, ddof=1)) if len(self.seed_accuracies) > 1 else None

    def as_row(self) -> dict[str, Any]:
        """A flat dict keyed by CSV_COLUMNS (None where there is no figure)."""
        low, high = self.ci or (None, None)
        test = self.paired
        return {
            "suite": self.suite,
            "base_model": self.base_model,
            "tuning": self.method,
            "steps": self.steps,
            "status": self.status,
            "accuracy": self.accuracy,
            "ci_low": low,
            "ci_high": high,
            "exact_match": self.exact_match,
            "gestalt": self.gestalt,
            "official_accuracy": self.official_accuracy,
            "n_questions": self.n_questions,
            "base_accuracy": self.base_accuracy,
            "n_seeds": len(self.seeds) or None,
            "seed_accuracies": " ".join(f"{s}:{a:.4f}" for s, a in zip(self.seeds, self.seed_accuracies, strict=True))
            if self.seed_accuracies  # empty when a seed's run reported no accuracy
            else "",
            "accuracy_std": self.accuracy_std,
            "seed_flips": self.seed_flips,
            "paired_test": test.test if test else None,
            "p_value": test.p_value if test else None,
            **{name: self.extra.get(name) for name in EXTRA_METRICS},
            "exam": self.exam,
            "gains": test.gains if test else None,
            "losses": test.losses if test else None,
            "peak_memory_mb": self.peak_memory_mb,
            "memory_kind": self.memory_kind,
            "train_time_s": self.train_time_s,
            "tokens_per_s": self.tokens_per_s,
            "error": self.error,
            "source": self.source,
        }


def column_label(column: tuple[str, int]) -> str:
    method, steps = column
    return method if method.startswith("untuned") or method == "api" else f"{method} · {steps} steps"


def build_cell(runs: Sequence[RunRecord], n_boot: int = DEFAULT_N_BOOT) -> Cell:
    """A cell from its runs, one per seed: figures averaged over the finished seeds, uncertainty over both seeds
    and questions, and the paired test against each run's own base model on the same questions."""
    runs = sorted(runs, key=lambda r: r.seed)
    done = [r for r in runs if r.status == "finished"]
    first = runs[-1] if not done else done[0]
    problems = "; ".join(
        f"seed {r.seed}: {r.status}" + (f": {r.error}" if r.error else "") for r in runs if r not in done
    )
    status = "finished" if done else first.status
    error = problems if done else first.error
    cell = Cell(first.suite, first.base_model, first.method, first.steps, status, error, _sources(runs))
    if not done:
        return cell
    cell.seeds = [r.seed for r in done]
    for name in ("accuracy", "exact_match", "gestalt", "official_accuracy", "base_accuracy"):
        setattr(cell, name, _mean([_suite_metric(r.results, r.suite, name) for r in done]))
    cell.seed_accuracies = [a for r in done if (a := _suite_metric(r.results, r.suite, "accuracy")) is not None]
    if len(cell.seed_accuracies) != len(done):
        cell.seed_accuracies = []
    base = _correct_matrix([r.base_correct for r in done], cell.source)
    tuned = _correct_matrix([r.tuned_correct for r in done], cell.source)
    scored = base if first.untuned else tuned  # an untuned run's model is its base
    if scored is not None:
        correct = scored[1]
        cell.n_questions = correct.shape[1]
        several = len(done) > 1
        cell.ci = seed_bootstrap_ci(correct, n_boot=n_boot) if several else bootstrap_ci(correct[0], n_boot=n_boot)
        cell.seed_flips = seed_flips(correct) if several else None
    if base is not None and tuned is not None:
        if base[0] != tuned[0]:
            only_base, only_tuned = set(base[0]) - set(tuned[0]), set(tuned[0]) - set(base[0])
            raise DataError(
                "base and tuned predictions do not pair up: the two models were scored on different questions "
                f"({len(only_base)} only before, e.g. {sorted(only_base)[:3]}; "
                f"{len(only_tuned)} only after, e.g. {sorted(only_tuned)[:3]})",
                path=cell.source,
            )
        cell.paired = paired_test(base[1], tuned[1], n_perm=n_boot)
    for name in EXTRA_METRICS:
        if (value := _mean([_suite_metric(r.results, r.suite, name) for r in done])) is not None:
            cell.extra[name] = value
    failed = [f for r in done if (f := _suite_metric(r.results, r.suite, "n_failed")) is not None]
    cell.n_failed = int(max(failed)) if failed else None
    cell.exam = exam_summary(done[0].results, done[0].suite)  # the exam verdict of the lowest seed's run
    memories = [_peak_memory(r.results) for r in done]
    cell.peak_memory_mb = max((m for m, _ in memories if m is not None), default=None)
    cell.memory_kind = next((kind for _, kind in memories if kind), "")
    cell.train_time_s = _mean([r.results.get("perf/train_runtime_s") for r in done])
    cell.tokens_per_s = _mean([r.results.get("perf/train_tokens_per_s") for r in done])
    return cell


def _sources(runs: Sequence[RunRecord]) -> str:
    return ", ".join(r.source for r in runs)


def _mean(values: Sequence[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return float(np.mean(numbers)) if numbers and len(numbers) == len(values) else None


def _correct_matrix(per_run: Sequence[dict[str, bool] | None], source: str) -> tuple[list[str], np.ndarray] | None:
    """(question ids, seeds × questions correctness in that order); every seed must have answered the same questions."""
    if not per_run or any(run is None for run in per_run):
        return None
    ids = sorted(per_run[0])  # type: ignore[arg-type]
    for run in per_run:
        if sorted(run) != ids:  # type: ignore[arg-type]
            raise DataError("the seeds of this cell were scored on different questions", path=source)
    return ids, np.array([[run[i] for i in ids] for run in per_run], dtype=bool)  # type: ignore[index]


def _suite_metric(results: dict[str, Any], suite: str, name: str) -> float | None:
    value = results.get(f"eval/{suite}/{name}")
    return float(value) if isinstance(value, int | float) else None


_EXAM_KEY = re.compile(
    r"eval/(?P<suite>[^/]+)/year/(?P<year>\d+)/(?P<name>required|general)_(?P<what>points|total|pass)$"
)


def exam_summary(results: dict[str, Any], suite: str) -> str:
    """ "2025: required 170/200 pass · general 200/300 fail → FAIL" for each exam year the run was scored on."""
    years: dict[str, dict[str, float]] = {}
    for key, value in results.items():
        match = _EXAM_KEY.match(key)
        if match and match["suite"] == suite and isinstance(value, int | float):
            years.setdefault(match["year"], {})[f"{match['name']}_{match['what']}"] = float(value)
    parts = []
    for year, got in sorted(years.items()):
        sections = [
            f"{name} {got[f'{name}_points']:.0f}/{got[f'{name}_total']:.0f}"
            + {1.0: " pass", 0.0: " fail"}.get(got.get(f"{name}_pass", -1.0), "")
            for name in ("required", "general")
            if f"{name}_total" in got
        ]
        verdict = results.get(f"eval/{suite}/year/{year}/passed", -1.0)
        parts.append(f"{year}: " + " · ".join(sections) + {1.0: " → PASS", 0.0: " → FAIL"}.get(verdict, ""))
    return "; ".join(parts)


def _peak_memory(results: dict[str, Any]) -> tuple[float | None, str]:
    for key, kind in (("memory/cuda_max_allocated_mb", "cuda"), ("memory/peak_rss_mb", "rss")):
        if isinstance(results.get(key), int | float):
            return float(results[key]), kind
    return None, ""


# ----------------------------------------------------------------------------------------- matrix
@dataclass
class Matrix:
    """One evaluation suite's matrix: rows base models, columns (method, steps), every cell filled."""

    suite: str
    rows: list[str]
    columns: list[tuple[str, int]]
    cells: dict[tuple[str, tuple[str, int]], Cell]

    def cell(self, row: str, column: tuple[str, int]) -> Cell:
        return self.cells[row, column]

    def ordered_cells(self) -> list[Cell]:
        return [self.cells[row, column] for row in self.rows for column in self.columns]


@dataclass
class Report:
    matrices: list[Matrix]
    superseded: list[RunRecord]  # older runs of a cell that a later (or finished) run replaces
    other_stages: list[RunRecord]  # e.g. stage=pretrain runs: trained, but not scored on QA
    sources: list[str]
    n_boot: int
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # run label → its metrics.jsonl rows


def build_report(records: Sequence[RunRecord], sources: Sequence[str], n_boot: int = DEFAULT_N_BOOT) -> Report:
    sft = [r for r in records if r.stage == "sft"]
    chosen, superseded = choose_runs(sft)
    matrices = [
        build_matrix(suite, [r for r in chosen if r.suite == suite], n_boot)
        for suite in sorted({r.suite for r in chosen})
    ]
    other_stages = [r for r in records if r.stage != "sft"]
    curves = {f"{r.base_model} / {column_label(r.column)}": r.history for r in [*chosen, *other_stages] if r.history}
    return Report(matrices, superseded, other_stages, list(sources), n_boot, curves)


def choose_runs(records: Iterable[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]]:
    """One run per cell and seed: a finished run beats an unfinished one, then the latest wins (a re-run replaces)."""
    best: dict[tuple, RunRecord] = {}
    superseded = []
    for run in sorted(records, key=lambda r: (r.status == "finished", r.started)):
        key = (run.suite, run.base_model, run.column, run.seed)
        if key in best:
            superseded.append(best[key])
        best[key] = run
    return list(best.values()), superseded


def build_matrix(suite: str, runs: Sequence[RunRecord], n_boot: int = DEFAULT_N_BOOT) -> Matrix:
    """Cells for every row × column that appears anywhere; a combination no run covers is `missing`."""
    rows = sorted({r.base_model for r in runs})
    columns = sorted({r.column for r in runs}, key=_column_order)
    by_cell: dict[tuple[str, tuple[str, int]], list[RunRecord]] = {}
    for run in runs:
        by_cell.setdefault((run.base_model, run.column), []).append(run)
    cells = {key: build_cell(seeds, n_boot) for key, seeds in by_cell.items()}
    for row in rows:
        for column in columns:
            if (row, column) in cells:
                continue
            if row.startswith("api:") != (column[0] == "api"):
                cells[row, column] = Cell(suite, row, column[0], column[1], NOT_APPLICABLE)
            else:
                error = "no run of this combination (it exists for other base models)"
                cells[row, column] = Cell(suite, row, column[0], column[1], MISSING, error)
    return Matrix(suite, rows, columns, cells)


def _column_order(column: tuple[str, int]) -> tuple[int, str, int]:
    """METHOD_ORDER first (a variant like dora-nf4 beside its method), unknown methods last, then steps."""
    method, steps = column
    known = [name for name in (method, method.split("-")[0]) if name in METHOD_ORDER]
    return (METHOD_ORDER.index(known[0]) if known else len(METHOD_ORDER)), method, steps


# ---------------------------------------------------------------------------------------- writing
def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """report.csv, the plots and report.md (which shows the plots) in out_dir; returns name → path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"csv": write_csv(report, out_dir / "report.csv")}
    for matrix in report.matrices:
        files |= write_plots(matrix, out_dir)
    if any(_loss_curve(rows, "train/learning_rate") for rows in report.curves.values()):
        files["learning_curves/all"] = out_dir / "learning_curves.png"
        plot_learning_curves(report.curves, files["learning_curves/all"])
    files["markdown"] = out_dir / "report.md"
    files["markdown"].write_text(render_markdown(report, files), encoding="utf-8")
    files["html"] = out_dir / "report.html"
    files["html"].write_text(render_html(report, files), encoding="utf-8")
    return files


def table_rows(report: Report) -> list[dict[str, Any]]:
    return [cell.as_row() for matrix in report.matrices for cell in matrix.ordered_cells() if cell.applies]


def write_csv(report: Report, path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in table_rows(report))
    return path


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "—" if value is None else format(value, spec)


def _md(text: str, limit: int = 0) -> str:
    """Text safe inside a Markdown table cell (one line, no bare pipes), optionally shortened."""
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if not limit or len(flat) <= limit else flat[: limit - 1] + "…"


def cell_text(cell: Cell) -> tuple[str, str, list[str]]:
    """(headline, what follows it, detail lines) of a cell; the Markdown and the HTML table share them."""
    if not cell.applies:
        return "—", "", []
    if cell.status != "finished":
        return cell.status.upper(), "", [cell.error] if cell.error else []
    ci = f" [{_fmt(cell.ci[0])}, {_fmt(cell.ci[1])}]" if cell.ci else ""
    spread = f" ± {_fmt(cell.accuracy_std)} sd" if cell.accuracy_std is not None else ""
    lines = []
    if len(cell.seeds) > 1:
        per_seed = " / ".join(_fmt(a) for a in cell.seed_accuracies)
        lines.append(f"{len(cell.seeds)} seeds: {per_seed} · {cell.seed_flips} questions flip")
    lines.append(f"EM {_fmt(cell.exact_match)} · gestalt {_fmt(cell.gestalt)}")
    lines += _extra_lines(cell)
    if cell.paired:
        test = cell.paired
        lines.append(f"p = {test.p_value:.3g} (+{test.gains} / −{test.losses})")
    perf = [f"{_fmt(cell.peak_memory_mb, ',.0f')} MB {cell.memory_kind}".rstrip()]
    if cell.train_time_s is not None:
        perf.append(f"{cell.train_time_s:,.1f} s")
    if cell.tokens_per_s is not None:
        perf.append(f"{cell.tokens_per_s:,.0f} tok/s")
    lines.append(" · ".join(perf))
    return _fmt(cell.accuracy), spread + ci, lines


def render_cell(cell: Cell) -> str:
    """A matrix cell as Markdown lines joined by <br> (GitHub and W&B render them)."""
    head, suffix, lines = cell_text(cell)
    limit = 80 if cell.status != "finished" else 0
    return "<br>".join([f"**{head}**{suffix}", *(_md(line, limit) for line in lines)])


def _extra_lines(cell: Cell) -> list[str]:
    """Official score caveats, the other harnesses' normalisations, position bias and the exam verdict."""
    extra, lines = cell.extra, []
    if cell.official_accuracy is not None:
        counts = [f"{extra[k]:.0f} {k[2:]}" for k in ("n_unparsed", "n_excluded") if extra.get(k)]
        lines.append(f"official {_fmt(cell.official_accuracy)}" + (f" ({', '.join(counts)})" if counts else ""))
    norms = [f"{label} {_fmt(extra[k])}" for k, label in _NORM_LABELS.items() if k in extra]
    if norms:
        lines.append(" · ".join(norms))
    if "consistent_accuracy" in extra:
        lines.append(f"consistent over rotations {_fmt(extra['consistent_accuracy'])}")
    if cell.exam:
        lines.append(_md(cell.exam))
    return lines


_NORM_LABELS = {"accuracy_norm_chars": "/char", "accuracy_bytes": "/byte", "accuracy_norm_tokens": "/token"}


def render_matrix(matrix: Matrix) -> list[str]:
    header = ["base model", *(column_label(c) for c in matrix.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in matrix.rows:
        cells = [render_cell(matrix.cell(row, column)) for column in matrix.columns]
        lines.append(f"| {_md(row)} | " + " | ".join(cells) + " |")
    return lines


def legend(n_boot: int) -> str:
    return (
        f"How to read a cell: **accuracy** [95 % percentile-bootstrap CI over questions, {n_boot:,} resamples]; "
        "EM = exact match; gestalt = mean difflib similarity of response and answer; "
        "official = the benchmark's own scorer (only answers the response names count; unparsed = responses "
        "naming none, excluded = published questions without an official answer or with an image); "
        "/char, /byte, /token = the same log-likelihood pass with each choice's log-probability divided by its "
        "length (lm-evaluation-harness acc_norm, acc_bytes; JMedBench); consistent = right in every rotation of "
        "the choices (eval.permutations); exam = points per section and pass/fail against the year's pass line; "
        "p = two-sided exact McNemar test of the tuned model against the same run's model before tuning "
        "(for QLoRA that is the 4-bit base), on the same questions, with +gains / −losses = questions it "
        "newly answers right / newly answers wrong. A cell run with several `trainer.seed`s shows the mean "
        "accuracy ± its standard deviation over seeds, a two-level bootstrap CI (seeds, then questions), the "
        "per-seed accuracies, how many questions flip between seeds, and p from a sign-flip permutation test "
        "over questions of each question's accuracy averaged over seeds (which is McNemar's test for one seed); "
        "memory = peak CUDA memory allocated (cuda) or the "
        "process's peak resident set since the job's previous reading (rss; reset per reading, so each job of a "
        "single-process multirun reports its own); s = training wall time; tok/s = training tokens per second."
    )


def render_markdown(report: Report, files: dict[str, Path]) -> str:
    statuses = [c.status for m in report.matrices for c in m.ordered_cells() if c.applies]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
    lines = ["# medtune comparison report", "", f"Sources: {', '.join(f'`{s}`' for s in report.sources)}  "]
    lines += [f"Cell status: {counts or 'no cells'}", "", legend(report.n_boot)]
    for matrix in report.matrices:
        n = {c.n_questions for c in matrix.ordered_cells() if c.n_questions is not None}
        lines += ["", f"## Suite `{matrix.suite}` ({', '.join(map(str, sorted(n))) or '?'} questions)", ""]
        lines += render_matrix(matrix)
        lines += ["", *(f"![{name}]({path.name})" for name, path in plots_of(files, matrix.suite).items())]
    if "learning_curves/all" in files:
        lines += ["", "## Learning curves", "", f"![learning curves]({files['learning_curves/all'].name})"]
    lines += _run_list("Failed, unfinished and missing cells", _problem_lines(report))
    lines += _run_list("Superseded runs (a later or finished run of the same cell is shown)", _runs(report.superseded))
    lines += _run_list("Runs outside the matrix (not scored on QA)", _runs(report.other_stages))
    return "\n".join(lines) + "\n"


def _problem_lines(report: Report) -> list[str]:
    return [
        f"{c.suite} / {_md(c.base_model)} / {c.column_label}: **{c.status}**"
        + (f": {_md(c.error)}" if c.error else "")
        + (f" (`{c.source}`)" if c.source else "")
        for m in report.matrices
        for c in m.ordered_cells()
        if c.needs_attention
    ]


def _runs(runs: Sequence[RunRecord]) -> list[str]:
    return [f"{r.stage} {_md(r.base_model)} / {column_label(r.column)}: {r.status} (`{r.source}`)" for r in runs]


def _run_list(title: str, items: list[str]) -> list[str]:
    return ["", f"## {title}", "", *(f"- {item}" for item in items)] if items else []


# ------------------------------------------------------------------------------------------- HTML
HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 90em; color: #222; }
table.matrix { border-collapse: collapse; margin: 1em 0; }
table.matrix th, table.matrix td { border: 1px solid #bbb; padding: 0.4em 0.6em; vertical-align: top; }
table.matrix thead th { background: #eef; }
td.finished b { font-size: 1.1em; }
td.failed, td.running, td.missing, td[class="not started"] { background: #fde8e8; color: #8a1c1c; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.legend { font-size: 0.9em; color: #555; }
"""


def render_html(report: Report, files: dict[str, Path]) -> str:
    """report.html: one self-contained page (plots inlined as base64), so it opens from disk with no server."""
    statuses = [c.status for m in report.matrices for c in m.ordered_cells() if c.applies]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
    body = [
        "<h1>medtune comparison report</h1>",
        f"<p>Sources: {', '.join(f'<code>{escape(s)}</code>' for s in report.sources)}<br>"
        f"Cell status: {escape(counts or 'no cells')}</p>",
        f"<p class='legend'>{escape(legend(report.n_boot).replace('**', ''))}</p>",
    ]
    for matrix in report.matrices:
        n = {c.n_questions for c in matrix.ordered_cells() if c.n_questions is not None}
        body.append(
            f"<h2>Suite <code>{escape(matrix.suite)}</code> ({', '.join(map(str, sorted(n))) or '?'} questions)</h2>"
        )
        body.append(_html_matrix(matrix))
        body += [_html_image(name, path) for name, path in plots_of(files, matrix.suite).items()]
        body += _html_list(f"Failures and exclusions in {matrix.suite}", _suite_problems(report, matrix))
    if "learning_curves/all" in files:
        body += ["<h2>Learning curves</h2>", _html_image("learning curves", files["learning_curves/all"])]
    body += _html_list("Runs outside the matrix (not scored on QA)", _runs(report.other_stages))
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>medtune comparison report</title>"
        f"<style>{HTML_STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _html_matrix(matrix: Matrix) -> str:
    header = "".join(f"<th>{escape(h)}</th>" for h in ["base model", *map(column_label, matrix.columns)])
    rows = []
    for row in matrix.rows:
        cells = []
        for column in matrix.columns:
            cell = matrix.cell(row, column)
            head, suffix, lines = cell_text(cell)
            text = "<br>".join([f"<b>{escape(head)}</b>{escape(suffix)}", *map(escape, lines)])
            cells.append(f"<td class='{escape(cell.status)}'>{text}</td>")
        rows.append(f"<tr><th>{escape(row)}</th>{''.join(cells)}</tr>")
    return (
        f"<table class='matrix' data-suite='{escape(matrix.suite)}'><thead><tr>{header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _html_image(name: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<figure><img alt='{escape(name)}' src='data:image/png;base64,{data}'></figure>"


def _suite_problems(report: Report, matrix: Matrix) -> list[str]:
    """A suite's cells without a result, cells with unreadable answers, and runs the matrix left out."""
    lines = [
        f"{c.base_model} / {c.column_label}: {c.status}"
        + (f": {c.error}" if c.error else "")
        + (f" ({c.source})" if c.source else "")
        for c in matrix.ordered_cells()
        if c.needs_attention
    ]
    lines += [
        f"{c.base_model} / {c.column_label}: {c.n_failed} of {c.n_questions} answers unreadable or failed"
        for c in matrix.ordered_cells()
        if c.n_failed
    ]
    lines += [f"superseded: {line}" for line in _runs([r for r in report.superseded if r.suite == matrix.suite])]
    return lines


def _html_list(title: str, items: list[str]) -> list[str]:
    return (
        [f"<h3>{escape(title)}</h3><ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"] if items else []
    )


# ------------------------------------------------------------------------------------------ plots
# matplotlib's object API (Figure, not pyplot) renders PNGs with Agg and keeps no global figure state.
def write_plots(matrix: Matrix, out_dir: Path) -> dict[str, Path]:
    """Both plots of one suite, keyed `<plot>/<suite>`."""
    slug = re.sub(r"[^\w.-]", "_", matrix.suite)
    accuracy, memory = out_dir / f"accuracy_{slug}.png", out_dir / f"memory_vs_accuracy_{slug}.png"
    plot_accuracy(matrix, accuracy)
    plot_memory_vs_accuracy(matrix, memory)
    return {f"accuracy/{matrix.suite}": accuracy, f"memory_vs_accuracy/{matrix.suite}": memory}


def plots_of(files: dict[str, Path], suite: str) -> dict[str, Path]:
    return {name: path for name, path in files.items() if path.suffix == ".png" and name.endswith(f"/{suite}")}


def _plottable(cells: Sequence[Cell]) -> tuple[list[Cell], np.ndarray, np.ndarray]:
    """The cells with an accuracy, their accuracies, and asymmetric CI error bars (2 × n; 0 without a CI)."""
    done = [c for c in cells if c.accuracy is not None]
    accuracy = np.array([c.accuracy for c in done], dtype=float)
    bounds = np.array([c.ci or (c.accuracy, c.accuracy) for c in done], dtype=float).reshape(-1, 2)
    return done, accuracy, np.stack([accuracy - bounds[:, 0], bounds[:, 1] - accuracy])


def plot_accuracy(matrix: Matrix, path: Path) -> None:
    """Grouped bars: one group per base model, one bar per column, 95 % CI whiskers; no bar = no result."""
    fig = Figure(figsize=(max(6.0, 1.5 + 0.6 * len(matrix.rows) * len(matrix.columns)), 4.5))
    ax = fig.subplots()
    width = 0.8 / len(matrix.columns)
    for j, column in enumerate(matrix.columns):
        offset = -0.4 + (j + 0.5) * width
        x_of = {row: i + offset for i, row in enumerate(matrix.rows)}
        done, accuracy, errors = _plottable([matrix.cell(row, column) for row in matrix.rows])
        if done:
            xs = [x_of[c.base_model] for c in done]
            ax.bar(xs, accuracy, width, label=column_label(column), yerr=errors, capsize=3)
        for row in matrix.rows:
            cell = matrix.cell(row, column)
            if cell.accuracy is None and cell.applies:
                ax.text(
                    x_of[row], 0.02, cell.status, rotation=90, ha="center", va="bottom", fontsize=8, color="crimson"
                )
    ax.set_xticks(np.arange(len(matrix.rows)), matrix.rows)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"QA accuracy on {matrix.suite} (95 % bootstrap CI)")
    if ax.get_legend_handles_labels()[0]:  # no bar at all when every cell failed
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_memory_vs_accuracy(matrix: Matrix, path: Path) -> None:
    """What each cell's accuracy costs in memory: one marker per tuning column, labelled by base model."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    kinds: set[str] = set()
    for column in matrix.columns:
        with_memory = [c for c in (matrix.cell(row, column) for row in matrix.rows) if c.peak_memory_mb is not None]
        done, accuracy, errors = _plottable(with_memory)
        if not done:
            continue
        kinds |= {c.memory_kind for c in done}
        memory = [float(c.peak_memory_mb or 0) for c in done]
        ax.errorbar(memory, accuracy, yerr=errors, fmt="o", capsize=3, label=column_label(column))
        for x, y, cell in zip(memory, accuracy, done, strict=True):
            ax.annotate(cell.base_model, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    if kinds:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no finished cell reports memory", ha="center", transform=ax.transAxes)
    ax.set_xlabel(f"peak memory (MB, {'/'.join(sorted(kinds)) or 'n/a'})")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Memory vs accuracy on {matrix.suite}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _loss_curve(rows: list[dict[str, Any]], marker_key: str) -> list[tuple[int, float]]:
    """(step, loss) of the rows holding `marker_key` (train rows: the learning rate; held-out rows: eval/runtime)."""
    loss_key = "train/loss" if marker_key.startswith("train/") else "eval/loss"
    return [
        (int(r[STEP_METRIC]), float(r[loss_key]))
        for r in rows
        if marker_key in r and loss_key in r and STEP_METRIC in r
    ]


def plot_learning_curves(curves: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Training loss (line) and held-out loss (dots) per run, from each run dir's metrics.jsonl."""
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    for label, rows in curves.items():
        train = _loss_curve(rows, "train/learning_rate")
        if not train:
            continue
        (line,) = ax.plot(*zip(*train, strict=True), label=label, linewidth=1.2)
        held_out = _loss_curve(rows, "eval/runtime")
        if held_out:
            ax.plot(*zip(*held_out, strict=True), "o", color=line.get_color(), markersize=4)
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (line: training, dots: held-out)")
    ax.set_title("Learning curves")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------------------------------- W&B
def log_report_to_wandb(
    report: Report,
    files: dict[str, Path],
    out_dir: Path,
    project: str | None = None,
    mode: WandbMode | None = None,
    run_dirs: Sequence[Path] = (),
) -> str:
    """Log the table and the plots as one W&B run (job_type "report") that uses the results artifact of every run
    dir it read; project and mode None: from the environment, as for every medtune run. Returns the run's id."""
    import wandb

    from medtune.config import WandbConfig
    from medtune.lineage import use_run_results
    from medtune.tracking import start_wandb_run

    run = start_wandb_run(
        WandbConfig(mode=mode, project=project),
        out_dir,
        {"sources": report.sources, "n_boot": report.n_boot},
        tags=["report"],
        group="report",
        name="comparison-report",
        job_type="report",
    )
    try:
        use_run_results(run, list(run_dirs))
        rows = table_rows(report)
        logged: dict[str, Any] = {
            "report/matrix": wandb.Table(
                columns=list[Any](CSV_COLUMNS), data=[[row[c] for c in CSV_COLUMNS] for row in rows]
            )
        }
        logged |= {f"report/{name}": wandb.Image(str(path)) for name, path in files.items() if path.suffix == ".png"}
        run.log(logged)
    finally:
        run.finish()
    return run.id


def collect_wandb(project: str, sweep: str | None) -> list[RunRecord]:
    """Runs of a W&B project (or one sweep of it) through the public API: online only."""
    import wandb

    api = wandb.Api()
    runs = api.sweep(f"{project}/{sweep}").runs if sweep else api.runs(project)
    return [_wandb_record(run) for run in runs if {"base_model", "adapter", "trainer", "eval"} <= run.config.keys()]


WANDB_STATES = {"finished": "finished", "running": "running"}  # crashed, killed, failed, preempted → failed


def _wandb_record(run: Any) -> RunRecord:
    from datetime import datetime

    results = dict(run.summary_metrics)
    suite = run.config["eval"]["suite"]
    status = WANDB_STATES.get(run.state, "failed")
    return record_from_config(
        run.config,
        source=f"wandb:{'/'.join(run.path)}",
        status=status,
        error="" if status != "failed" else f"W&B state {run.state}",
        results=results,
        base_correct=_wandb_correct(run, results.get(f"eval/{suite}/base_predictions")),
        tuned_correct=_wandb_correct(run, results.get(f"eval/{suite}/predictions")),
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


# ------------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m medtune.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="multirun dirs or train.py run dirs")
    parser.add_argument("--out", type=Path, help="output dir (default: <first path>/report)")
    parser.add_argument("--wandb-project", help="read runs from this W&B project ([entity/]project), online")
    parser.add_argument("--wandb-sweep", help="only this sweep id of --wandb-project")
    parser.add_argument("--n-boot", type=int, default=DEFAULT_N_BOOT, help="bootstrap resamples per CI")
    parser.add_argument(
        "--wandb-mode",
        choices=["offline", "online", "disabled"],
        help="where the report run goes (default: $WANDB_MODE, else offline)",
    )
    parser.add_argument("--log-project", help="W&B project of the report run (default: $WANDB_PROJECT, else medtune)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Path]:
    """Collect, build, write, and log the report; returns the written files."""
    if not args.paths and not args.wandb_project:
        raise ConfigError("give multirun/run dirs, or --wandb-project (and optionally --wandb-sweep).")
    if args.wandb_sweep and not args.wandb_project:
        raise ConfigError("--wandb-sweep needs --wandb-project (the sweep's [entity/]project).")
    if args.out is None and not args.paths:
        raise ConfigError("--out is required when reading from W&B (there is no multirun dir to write into).")
    records = collect_local(args.paths)
    sources = [str(p) for p in args.paths]
    if args.wandb_project:
        records += collect_wandb(args.wandb_project, args.wandb_sweep)
        sources.append(f"wandb:{args.wandb_project}" + (f"/sweeps/{args.wandb_sweep}" if args.wandb_sweep else ""))
    out_dir = args.out or args.paths[0] / "report"
    report = build_report(records, sources, args.n_boot)
    files = write_report(report, out_dir)
    if resolve_mode(args.wandb_mode) != "disabled":
        run_dirs = [Path(r.source) for r in records if not r.source.startswith("wandb:")]
        log_report_to_wandb(report, files, out_dir, args.log_project, args.wandb_mode, run_dirs)
    return files


def main(argv: Sequence[str] | None = None) -> None:
    with exit_on_user_error():
        files = run(parse_args(argv))
    print(f"report: {files['markdown']}\n        {files['html']}  (opens in any browser, no server)")


if __name__ == "__main__":
    main()
