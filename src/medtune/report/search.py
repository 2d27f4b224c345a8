"""The report's search section, one per study of a search's sweep dir (medtune_optuna): the best trial and its
overrides ready to paste, the optimisation history, parameter importances (fANOVA), the Pareto front of a
multi-objective study, and the pruned trials with the training steps they saved. Optuna computes and draws; this
module only chooses what to show and writes it down."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_IMPORTANCE_TRIALS = 4  # complete trials before fANOVA's forest says anything (fewer: a note instead)


@dataclass
class StudySection:
    name: str
    storage: str  # the spec optuna-dashboard opens
    group: str | None  # the W&B group of its trials
    lines: list[str] = field(default_factory=list)  # markdown
    files: dict[str, Path] = field(default_factory=dict)  # plot name → PNG
    summary: dict[str, Any] = field(default_factory=dict)  # figures for W&B
    trial_dirs: set[Path] = field(default_factory=set)  # every trial's run dir (resolved)
    best_dirs: set[Path] = field(default_factory=set)  # the best trial's (the Pareto front's): the matrix shows these


def in_matrix(source: str, sections: Sequence[StudySection]) -> bool:
    """A search's trials are one cell many times over: the matrix shows its best trial, the section the rest."""
    path = Path(source).resolve()
    return not any(path in s.trial_dirs and path not in s.best_dirs for s in sections)


def search_sections(paths: Sequence[Path], out_dir: Path) -> list[StudySection]:
    """A section per study of every given dir that holds a search's study; none for other dirs."""
    from medtune.run_dir import holds_study

    sections = []
    for path in paths:
        if path.is_dir() and holds_study(path):
            sections += [study_section(study, path, out_dir) for study in _load(path)]
    return sections


def _load(sweep_dir: Path) -> list[Any]:
    from medtune.search.status import load_studies

    return load_studies(sweep_dir)


def study_section(study: Any, sweep_dir: Path, out_dir: Path) -> StudySection:
    import optuna

    from medtune.search.runner import GROUP_ATTR
    from medtune.search.study import SPACE_ATTR, find_storage

    record = study.user_attrs.get(SPACE_ATTR, {})
    objectives = record.get("objective", ["objective"])
    section = StudySection(study.study_name, find_storage(sweep_dir) or "", study.user_attrs.get(GROUP_ATTR))
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    section.trial_dirs = _run_dirs(study.get_trials(deepcopy=False))
    section.lines += [f"## Search `{study.study_name}`", "", *_count_lines(study, sweep_dir, section.summary), ""]
    if not complete:
        section.lines.append("No complete trial yet: nothing to rank.")
        return section
    section.lines += _best_lines(study, record, objectives, section.summary)
    section.best_dirs = _run_dirs(_best_trials(study))
    slug = re.sub(r"[^\w.-]", "_", study.study_name)
    section.files[f"search/{study.study_name}/history"] = _plot(
        out_dir / f"search_history_{slug}.png", _history_plot(study, objectives)
    )
    if len(study.directions) > 1:
        section.files[f"search/{study.study_name}/pareto_front"] = _plot(
            out_dir / f"search_pareto_{slug}.png",
            lambda vis: vis.plot_pareto_front(study, target_names=objectives),
        )
    section.lines += ["", *_importance_lines(study, complete, objectives, out_dir / f"search_importance_{slug}.png")]
    if (out_dir / f"search_importance_{slug}.png").is_file():
        section.files[f"search/{study.study_name}/importance"] = out_dir / f"search_importance_{slug}.png"
    section.lines += ["", *(f"![{name}]({path.name})" for name, path in section.files.items())]
    return section


def _count_lines(study: Any, sweep_dir: Path, summary: dict[str, Any]) -> list[str]:
    """Trials per state, and what pruning saved: steps a pruned trial did not train, of the steps all would have."""
    from medtune.search.runner import RUN_DIR_ATTR
    from medtune.search.status import study_state
    from medtune.sweep import read_cell

    state = study_state(study)
    trained = planned = 0
    for trial in study.get_trials(deepcopy=False):
        run_dir = Path(trial.user_attrs.get(RUN_DIR_ATTR, ""))
        if trial.state.name not in ("COMPLETE", "PRUNED") or not (run_dir.name and run_dir.is_dir()):
            continue
        cell = read_cell(run_dir, sweep_dir.resolve())
        trained, planned = trained + (cell.step or 0), planned + (cell.total or cell.step or 0)
    saved = planned - trained
    summary |= {"trials_complete": state.counts["complete"], "trials_pruned": state.counts["pruned"]}
    summary |= {"steps_trained": trained, "steps_saved": saved}
    share = f" ({saved / planned:.0%})" if planned else ""
    return [
        f"{state.line()[len('study ') :]}.  ",
        f"Pruned trials: {state.counts['pruned']}, saving {saved} of {planned} training steps{share}.",
    ]


def _best_lines(study: Any, record: dict[str, Any], objectives: list[str], summary: dict[str, Any]) -> list[str]:
    """The best trial (or the Pareto front's trials), each as the command that trains it again."""
    from medtune.search.runner import OVERRIDES_ATTR

    fixed = [*record.get("fixed", []), *record.get("axes", [])]
    best = _best_trials(study)
    title = "Pareto front (no trial better on every objective)" if len(best) > 1 else "Best trial"
    lines = [
        f"### {title}",
        "",
        "| trial | " + " | ".join(objectives) + " | overrides |",
        "|---|" + "---|" * len(objectives) + "---|",
    ]
    for trial in best:
        values = " | ".join(f"{v:.4g}" for v in trial.values)
        lines.append(f"| {trial.number} | {values} | `{' '.join(trial.user_attrs.get(OVERRIDES_ATTR, []))}` |")
    first = best[0]
    summary |= {"best_trial": first.number} | {f"best/{k}": v for k, v in zip(objectives, first.values, strict=True)}
    command = " ".join(["python train.py", *fixed, *first.user_attrs.get(OVERRIDES_ATTR, [])])
    return [*lines, "", f"Trial {first.number} again, as one run:", "", f"    {command}"]


def _run_dirs(trials: Sequence[Any]) -> set[Path]:
    from medtune.search.runner import RUN_DIR_ATTR

    return {Path(t.user_attrs[RUN_DIR_ATTR]) for t in trials if RUN_DIR_ATTR in t.user_attrs}


def _best_trials(study: Any) -> list[Any]:
    """The best trial, or the Pareto front's trials of a multi-objective study."""
    return study.best_trials if len(study.directions) > 1 else [study.best_trial]


def _history_plot(study: Any, objectives: list[str]) -> Callable[[Any], Any]:
    if len(study.directions) == 1:
        return lambda vis: vis.plot_optimization_history(study, target_name=objectives[0])
    return lambda vis: vis.plot_optimization_history(study, target=lambda t: t.values[0], target_name=objectives[0])


def _importance_lines(study: Any, complete: list[Any], objectives: list[str], path: Path) -> list[str]:
    """fANOVA importances of the first objective; a note instead when too few trials (or one value) allow none."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    header = f"### Parameter importances (fANOVA, {objectives[0]})"
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return [header, "", f"Too few complete trials for importances ({len(complete)} of {MIN_IMPORTANCE_TRIALS})."]
    target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    try:
        importances = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), target=target)
    except (ValueError, RuntimeError) as err:
        return [header, "", f"No importances: {err}"]
    if not importances or any(math.isnan(v) for v in importances.values()):
        return [header, "", "No importances: the complete trials do not vary their parameters."]
    evaluator = FanovaImportanceEvaluator(seed=0)
    _plot(
        path,
        lambda vis: vis.plot_param_importances(study, evaluator=evaluator, target=target, target_name=objectives[0]),
    )
    rows = [f"| {name} | {value:.2f} |" for name, value in importances.items()]
    return [header, "", "| parameter | importance |", "|---|---|", *rows]


def _plot(path: Path, draw: Callable[[Any], Any]) -> Path:
    """One of optuna's matplotlib plots saved as a PNG (they are marked experimental: that warning says nothing
    about the figure, so it is silenced here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        axes = draw(vis)
    figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
    figure.set_size_inches(7, 4.5)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def search_markdown(sections: Sequence[StudySection]) -> str:
    return "".join("\n" + "\n".join(section.lines) + "\n" for section in sections)


def dashboard_lines(sections: Sequence[StudySection]) -> list[str]:
    """How to open each study file in optuna-dashboard (a separate install: pip install optuna-dashboard)."""
    storages = dict.fromkeys(section.storage for section in sections if section.storage)
    return [f"study:  optuna-dashboard {storage}   (pip install optuna-dashboard)" for storage in storages]
