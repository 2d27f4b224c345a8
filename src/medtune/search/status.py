"""Where a search stands: each study's trials with their parameters and states, and whether it reached n_trials.

`python -m medtune.sweep status <sweep dir>` prints these lines for a search's sweep dir (and exits 0 only when
every study holds its n_trials complete-or-pruned trials); the SweepSummary callback ends a search with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna

from medtune.search.study import count_done, find_storage, open_storage

STATE_WORDS = {  # Optuna's trial states as `medtune.sweep status` words them (run_dir.RunState's where they meet)
    optuna.trial.TrialState.COMPLETE: "complete",
    optuna.trial.TrialState.PRUNED: "pruned",
    optuna.trial.TrialState.FAIL: "failed",
    optuna.trial.TrialState.RUNNING: "running",
    optuna.trial.TrialState.WAITING: "waiting",
}


@dataclass(frozen=True)
class StudyState:
    name: str
    target: int | None  # n_trials of the latest command (None: a study medtune did not start)
    done: int  # complete + pruned
    counts: dict[str, int]  # state word → trials

    @property
    def reached(self) -> bool:
        return self.target is not None and self.done >= self.target

    def line(self) -> str:
        counts = ", ".join(f"{n} {word}" for word, n in self.counts.items() if n)
        return f"study {self.name}: {self.done} of {self.target or '?'} trials done ({counts or 'no trials'})"


def load_studies(sweep_dir: Path) -> list[optuna.Study]:
    """Every study in the sweep dir's storage (none when it holds no study file)."""
    spec = find_storage(sweep_dir)
    if spec is None:
        return []
    storage = open_storage(spec)
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
    return [optuna.load_study(study_name=name, storage=storage) for name in names]


def study_state(study: optuna.Study) -> StudyState:
    from medtune.search.runner import N_TRIALS_ATTR

    trials = study.get_trials(deepcopy=False)
    counts = {word: sum(t.state == state for t in trials) for state, word in STATE_WORDS.items()}
    return StudyState(study.study_name, study.user_attrs.get(N_TRIALS_ATTR), count_done(study), counts)


def trial_lines(study: optuna.Study, sweep_dir: Path) -> list[str]:
    """One line per trial: its dir, state, value(s), steps trained of its total, and its parameters."""
    from medtune.search.runner import OVERRIDES_ATTR, RUN_DIR_ATTR
    from medtune.sweep import read_cell

    rows = []
    for trial in study.get_trials(deepcopy=False):
        run_dir = Path(trial.user_attrs.get(RUN_DIR_ATTR, ""))
        cell = read_cell(run_dir, sweep_dir.resolve()) if run_dir.name and run_dir.is_dir() else None
        name = cell.name if cell else f"{study.study_name}/trial {trial.number}"
        values = "/".join(f"{v:.4g}" for v in trial.values) if trial.values else "-"
        if trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
            values = f"{trial.intermediate_values[trial.last_step]:.4g}@{trial.last_step}"  # type: ignore[index]
        steps = f"{_dash(cell.step if cell else None)}/{_dash(cell.total if cell else None)}"
        overrides = " ".join(trial.user_attrs.get(OVERRIDES_ATTR, [f"{k}={v}" for k, v in trial.params.items()]))
        rows.append((name, STATE_WORDS.get(trial.state, str(trial.state)), values, steps, overrides))
    name_w, value_w = (max((len(row[i]) for row in rows), default=0) for i in (0, 2))
    return [f"{n:<{name_w}}  {s:<8}  value {v:<{value_w}}  step {st:<7} {o}".rstrip() for n, s, v, st, o in rows]


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def search_status(sweep_dir: Path) -> int:
    """Print each study's trials and its count; 0 when every study reached its n_trials, 1 otherwise."""
    states = []
    for study in load_studies(sweep_dir):
        print("\n".join(trial_lines(study, sweep_dir)))
        states.append(study_state(study))
        print(states[-1].line())
    return 0 if states and all(s.reached for s in states) else 1


def best_line(study: optuna.Study) -> str:
    """The best trial (single objective) or the size of the Pareto front, for the end-of-search summary."""
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return "no complete trial yet"
    if len(study.directions) > 1:
        return f"Pareto front of {len(study.best_trials)} trial(s)"
    best = study.best_trial
    return f"best trial {best.number}: {best.value:.4g}"
