"""The HTML page: report.html, self-contained (plots inlined as base64) so it opens from disk."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from medtune.report.cells import column_label
from medtune.report.matrix import Matrix, Report
from medtune.report.plots import plots_of
from medtune.report.search import StudySection
from medtune.report.tables import cell_text, legend, run_lines

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


def render_html(report: Report, files: dict[str, Path], searches: Sequence[StudySection] = ()) -> str:
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
    body += _html_list("Runs outside the matrix (not scored on QA)", run_lines(report.other_stages))
    body += [_html_search(section) for section in searches]
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
    lines += [f"superseded: {line}" for line in run_lines([r for r in report.superseded if r.suite == matrix.suite])]
    return lines


def _html_list(title: str, items: list[str]) -> list[str]:
    return (
        [f"<h3>{escape(title)}</h3><ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"] if items else []
    )


def _html_search(section: StudySection) -> str:
    """A search study's section: its markdown lines as preformatted text (tables and the command stay pasteable),
    then its plots inlined."""
    text = [line for line in section.lines if not line.startswith(("![", "## "))]
    images = [_html_image(name, path) for name, path in section.files.items()]
    return f"<h2>Search <code>{escape(section.name)}</code></h2><pre>{escape(chr(10).join(text))}</pre>" + "".join(
        images
    )
