"""The matrix: runs chosen (one per cell and seed), grouped per suite into rows (base models) × columns
(method, steps) with every combination filled, missing or n/a; and the whole report's data."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from medtune.enums import Stage
from medtune.metric_keys import BASE_PREFIX, qa_key
from medtune.report.cells import NOT_APPLICABLE, Cell, build_cell, column_label
from medtune.report.records import RunRecord
from medtune.run_dir import BASE_EVAL_SUBDIR, RunState
from medtune.stats import DEFAULT_N_BOOT
from medtune.tuning import TUNING_METHODS, UNTUNED

MISSING = "missing"

METHOD_ORDER = (*TUNING_METHODS, "api")  # matrix column order: the table's, then API-scored models


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
    sft = [r for r in records if r.stage == Stage.sft]
    sft += base_scorings(sft)
    chosen, superseded = choose_runs(sft)
    matrices = [
        build_matrix(suite, [r for r in chosen if r.suite == suite], n_boot)
        for suite in sorted({r.suite for r in chosen})
    ]
    other_stages = [r for r in records if r.stage != Stage.sft]
    curves = {f"{r.base_model} / {column_label(r.column)}": r.history for r in [*chosen, *other_stages] if r.history}
    return Report(matrices, superseded, other_stages, list(sources), n_boot, curves)


def base_scorings(records: Sequence[RunRecord]) -> list[RunRecord]:
    """The untuned cell from a tuned run's own scoring of its base (train.py scores the base before tuning), for
    each base model and suite that no untuned run covers, so a single run's report shows base and tuned side by
    side. The latest finished run's scoring stands for the base (scoring the untrained base does not vary)."""
    covered = {(r.suite, r.base_model) for r in records if r.untuned}
    scored = [
        r for r in records if r.status == RunState.finished and not r.untuned and r.method != "api" and r.base_correct
    ]
    latest = {(r.suite, r.base_model): r for r in sorted(scored, key=lambda r: r.started)}
    return [_as_untuned(run) for key, run in latest.items() if key not in covered]


def _as_untuned(run: RunRecord) -> RunRecord:
    base = qa_key(run.suite, "", BASE_PREFIX)
    results = {qa_key(run.suite, k.removeprefix(base)): v for k, v in run.results.items() if k.startswith(base)}
    return RunRecord(
        source=f"{run.source} ({BASE_EVAL_SUBDIR})",
        base_model=run.base_model,
        method=UNTUNED,
        steps=0,
        suite=run.suite,
        stage=run.stage,
        status=run.status,
        seed=run.seed,
        results=results,
        base_correct=run.base_correct,
        started=run.started,
    )


def choose_runs(records: Iterable[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]]:
    """One run per cell and seed: a finished run beats an unfinished one, then the latest wins (a re-run replaces)."""
    best: dict[tuple, RunRecord] = {}
    superseded = []
    for run in sorted(records, key=lambda r: (r.status == RunState.finished, r.started)):
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
