"""Cells: one matrix cell built from its runs (one per seed): figures averaged over seeds, bootstrap CIs,
the paired test against the base model, exam verdicts, memory and speed; and its flat CSV row."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medtune.errors import DataError
from medtune.metric_keys import CUDA_MAX_ALLOCATED_MB, PEAK_RSS_MB, TRAIN_RUNTIME_S, TRAIN_TOKENS_PER_S, qa_key
from medtune.report.records import RunRecord
from medtune.run_dir import RunState
from medtune.stats import DEFAULT_N_BOOT, PairedResult, bootstrap_ci, paired_test, seed_bootstrap_ci, seed_flips
from medtune.tuning import UNTUNED

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
    exam: str = ""  # per exam year: section points and pass/fail (medtune.evaluation.metrics.exam_result)

    @property
    def column_label(self) -> str:
        return column_label((self.method, self.steps))

    @property
    def applies(self) -> bool:
        return self.status != NOT_APPLICABLE

    @property
    def needs_attention(self) -> bool:
        """No result, or a result missing some seeds (a finished cell's error lists the seeds that did not finish)."""
        return self.applies and (self.status != RunState.finished or bool(self.error))

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
    return method if method.startswith(UNTUNED) or method == "api" else f"{method} · {steps} steps"


def build_cell(runs: Sequence[RunRecord], n_boot: int = DEFAULT_N_BOOT) -> Cell:
    """A cell from its runs, one per seed: figures averaged over the finished seeds, uncertainty over both seeds
    and questions, and the paired test against each run's own base model on the same questions."""
    runs = sorted(runs, key=lambda r: r.seed)
    done = [r for r in runs if r.status == RunState.finished]
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
    cell.train_time_s = _mean([r.results.get(TRAIN_RUNTIME_S) for r in done])
    cell.tokens_per_s = _mean([r.results.get(TRAIN_TOKENS_PER_S) for r in done])
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
    value = results.get(qa_key(suite, name))
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
        verdict = results.get(qa_key(suite, f"year/{year}/passed"), -1.0)
        parts.append(f"{year}: " + " · ".join(sections) + {1.0: " → PASS", 0.0: " → FAIL"}.get(verdict, ""))
    return "; ".join(parts)


def _peak_memory(results: dict[str, Any]) -> tuple[float | None, str]:
    for key, kind in ((CUDA_MAX_ALLOCATED_MB, "cuda"), (PEAK_RSS_MB, "rss")):
        if isinstance(results.get(key), int | float):
            return float(results[key]), kind
    return None, ""
