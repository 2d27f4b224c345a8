"""Writing the report: report.csv, the plots, report.md and report.html into one output dir."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medtune.metric_keys import TRAIN_LEARNING_RATE
from medtune.report.html import render_html
from medtune.report.matrix import Report
from medtune.report.plots import loss_curve, plot_learning_curves, write_plots
from medtune.report.search import StudySection, search_markdown
from medtune.report.tables import render_markdown, write_csv


def write_report(report: Report, out_dir: Path, searches: Sequence[StudySection] = ()) -> dict[str, Path]:
    """report.csv, the plots and report.md (which shows the plots) in out_dir, with a section per search study
    (its plots already in out_dir); returns name → path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"csv": write_csv(report, out_dir / "report.csv")}
    for matrix in report.matrices:
        files |= write_plots(matrix, out_dir)
    if any(loss_curve(rows, TRAIN_LEARNING_RATE) for rows in report.curves.values()):
        files["learning_curves/all"] = out_dir / "learning_curves.png"
        plot_learning_curves(report.curves, files["learning_curves/all"])
    files["markdown"] = out_dir / "report.md"
    files["markdown"].write_text(render_markdown(report, files) + search_markdown(searches), encoding="utf-8")
    for section in searches:
        files |= section.files
    files["html"] = out_dir / "report.html"
    files["html"].write_text(render_html(report, files, searches), encoding="utf-8")
    return files
