"""The trial's side of pruning: report the figure the pruner watches to the study storage, and stop when told.

Runs in the trial's own process (a local job or a SLURM node), talking to the storage file, never to the
sweeper's memory. A pruned trial saves a checkpoint at the step it stopped, and training.run then raises
`run_dir.Pruned`, so the run dir says `pruned` and its W&B run is tagged so.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from medtune.config import SearchTrialConfig
from medtune.metric_keys import EVAL_LOSS


class PruningCallback(TrainerCallback):
    """Reports `search.report` at each step it is measured; asks the study's pruner whether to go on."""

    def __init__(self, search: SearchTrialConfig) -> None:
        import optuna

        from medtune.search.study import open_storage, pruner_of

        assert search.storage and search.study and search.trial is not None and search.report
        storage = open_storage(search.storage)
        study = optuna.load_study(study_name=search.study, storage=storage)
        study.pruner = pruner_of(study)  # Optuna's storage keeps no pruner: the sweeper left its settings there
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, search.trial)
        self.trial = optuna.trial.Trial(study, trial_id)
        self.figure = search.report
        self.pruned_at: int | None = None  # the step the pruner stopped the trial at
        self.value: float | None = None  # ... and the figure it had there

    def observe(self, step: int, figures: dict[str, float]) -> None:
        """Called with what the run logs at a step (the QA accuracy, the held-out loss)."""
        if self.figure not in figures or self.pruned_at is not None:
            return
        self.trial.report(figures[self.figure], step)
        if self.trial.should_prune():
            self.pruned_at, self.value = step, figures[self.figure]

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        return self._stop_if_pruned(control)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any) -> Any:
        if metrics and "eval_loss" in metrics:
            self.observe(state.global_step, {EVAL_LOSS: metrics["eval_loss"]})
        return self._stop_if_pruned(control)

    def _stop_if_pruned(self, control: Any) -> Any:
        if self.pruned_at is not None:
            control.should_save = True  # the last checkpoint is the pruned step's: the trial can still be resumed
            control.should_training_stop = True
        return control

    def message(self) -> str:
        return f"pruned at step {self.pruned_at} ({self.figure}={self.value:.4g})"
