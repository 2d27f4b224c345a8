"""What a search may optimise: results.json keys a trial writes, and the figure it reports while it trains."""

from __future__ import annotations

from enum import StrEnum

from medtune.config import Stage, TrainConfig
from medtune.errors import ConfigError
from medtune.metric_keys import (
    CUDA_MAX_ALLOCATED_MB,
    CUDA_MAX_RESERVED_MB,
    EVAL_LOSS,
    PEAK_RSS_MB,
    TRAIN_GLOBAL_STEP,
    TRAIN_LOSS,
    TRAIN_RUNTIME_S,
    TRAIN_TOKENS_PER_S,
    TRAIN_TOKENS_SEEN,
    qa_key,
)
from medtune.run_dir import RESULTS_FILE

DEFAULT_OBJECTIVE = "objective"  # training.run's headline: the QA accuracy, else the held-out loss
# results.json keys outside eval/<suite>/ that training.run writes (tests/unit/test_search.py checks a real trial's
# results.json against this list, so it cannot drift).
TRAINING_KEYS = (
    "objective",
    TRAIN_LOSS,
    TRAIN_GLOBAL_STEP,
    TRAIN_TOKENS_SEEN,
    TRAIN_RUNTIME_S,
    TRAIN_TOKENS_PER_S,
    "params/trainable",
    "params/total",
    "params/trainable_pct",
    EVAL_LOSS,
    PEAK_RSS_MB,  # CPU runs
    CUDA_MAX_ALLOCATED_MB,  # CUDA runs
    CUDA_MAX_RESERVED_MB,
)


# The QA metrics a scoring writes under eval/<suite>/ (medtune.evaluation.scoring; consistent_accuracy with
# eval.permutations > 1). The integration test of the search checks a real trial's results.json holds them.
QA_METRICS = (
    "accuracy",
    "exact_match",
    "gestalt",
    "official_accuracy",
    "points",
    "accuracy_norm_chars",
    "accuracy_bytes",
    "accuracy_norm_tokens",
    "lm_eval/acc",
    "lm_eval/acc_norm",
    "lm_eval/acc_bytes",
    "n_failed",
    "n_unparsed",
    "eval_seconds",
    "consistent_accuracy",
)


class Direction(StrEnum):
    maximize = "maximize"
    minimize = "minimize"


def check_objectives(objectives: list[str], directions: list[str], tc: TrainConfig) -> None:
    """Every objective must be a key a trial of this config writes, with a direction each: a typo fails here, not
    after the first trial trained for nothing."""
    if not objectives:
        raise ConfigError(f"hydra.sweeper.objective is empty: name at least one {RESULTS_FILE} key (e.g. objective).")
    if len(directions) != len(objectives):
        raise ConfigError(
            f"hydra.sweeper.direction has {len(directions)} value(s) for {len(objectives)} objective(s): "
            "give one direction (maximize | minimize) per objective."
        )
    for direction in directions:
        if direction not in set(Direction):
            raise ConfigError(f"hydra.sweeper.direction={direction!r} is not one of {', '.join(Direction)}.")
    for key in objectives:
        if not writes(key, tc):
            raise ConfigError(
                f"hydra.sweeper.objective={key!r} is no key a trial writes to {RESULTS_FILE}: use objective (the QA "
                f"accuracy), eval/{tc.eval.suite}/<metric>, eval/loss or one of {', '.join(TRAINING_KEYS[1:])}."
            )


def writes(key: str, tc: TrainConfig) -> bool:
    """Whether a trial of `tc` writes `key`: the training figures, and the scored suite's metrics."""
    scores_qa = tc.stage == Stage.sft and tc.eval.at_end
    suite = qa_key(tc.eval.suite, "")
    return key in TRAINING_KEYS or (scores_qa and key.removeprefix(suite) in QA_METRICS and key.startswith(suite))


def reported_figure(objective: str, tc: TrainConfig) -> str:
    """The figure a trial reports during training for the pruner: the objective itself, which must be one that
    training logs as it goes (the QA accuracy with eval.every_steps, the held-out loss with trainer.eval_steps)."""
    accuracy = qa_key(tc.eval.suite, "accuracy")
    if objective == DEFAULT_OBJECTIVE:
        objective = accuracy if tc.stage == Stage.sft and tc.eval.at_end else EVAL_LOSS
    if objective == accuracy and tc.eval.every_steps > 0:
        return objective
    if objective == EVAL_LOSS and tc.trainer.eval_steps > 0:
        return objective
    raise ConfigError(
        f"a pruner needs the objective reported while the trial trains: {objective} is not. Prune on {accuracy} "
        "with eval.every_steps=<N>, or on eval/loss with trainer.eval_steps=<N>; or set hydra.sweeper.pruner=none."
    )
