"""Tables: the matrix as Markdown (report.md, with its legend and problem lists) and as CSV rows; the cell
text the HTML page shares."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medtune.report.cells import CSV_COLUMNS, Cell, column_label
from medtune.report.matrix import Matrix, Report
from medtune.report.plots import plots_of
from medtune.report.records import RunRecord
from medtune.run_dir import RunState


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
    if cell.status != RunState.finished:
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
    limit = 80 if cell.status != RunState.finished else 0
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
    lines += _run_list(
        "Superseded runs (a later or finished run of the same cell is shown)", run_lines(report.superseded)
    )
    lines += _run_list("Runs outside the matrix (not scored on QA)", run_lines(report.other_stages))
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


def run_lines(runs: Sequence[RunRecord]) -> list[str]:
    """One line per run (stage, row / column: status, source); report.md and report.html list runs with it."""
    return [f"{r.stage} {_md(r.base_model)} / {column_label(r.column)}: {r.status} (`{r.source}`)" for r in runs]


def _run_list(title: str, items: list[str]) -> list[str]:
    return ["", f"## {title}", "", *(f"- {item}" for item in items)] if items else []
