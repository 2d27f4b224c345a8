"""Plots: per-suite accuracy bars and memory vs accuracy, and the learning curves, as PNGs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from medtune.metric_keys import EVAL_LOSS, EVAL_RUNTIME, TRAIN_LEARNING_RATE, TRAIN_LOSS
from medtune.report.cells import Cell, column_label
from medtune.report.matrix import Matrix
from medtune.tracking import STEP_METRIC


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


def loss_curve(rows: list[dict[str, Any]], marker_key: str) -> list[tuple[int, float]]:
    """(step, loss) of the rows holding `marker_key` (train rows: the learning rate; held-out rows: eval/runtime)."""
    loss_key = TRAIN_LOSS if marker_key.startswith("train/") else EVAL_LOSS
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
        train = loss_curve(rows, TRAIN_LEARNING_RATE)
        if not train:
            continue
        (line,) = ax.plot(*zip(*train, strict=True), label=label, linewidth=1.2)
        held_out = loss_curve(rows, EVAL_RUNTIME)
        if held_out:
            ax.plot(*zip(*held_out, strict=True), "o", color=line.get_color(), markersize=4)
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (line: training, dots: held-out)")
    ax.set_title("Learning curves")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
