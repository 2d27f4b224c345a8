"""Is a difference real? Uncertainty of a QA accuracy and a paired test between two models.

The study compares accuracies a few points apart on a few hundred questions, so every accuracy in
the report carries a 95 % bootstrap confidence interval over questions, and every tuned model is
compared with its untuned base on the same questions by McNemar's exact test (only the questions
on which the two disagree carry information about which is better).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

DEFAULT_N_BOOT = 10_000  # bootstrap resamples per interval


def bootstrap_ci(
    correct: Sequence[bool], confidence: float = 0.95, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the accuracy (mean of `correct`), resampling questions.

    Resampling n questions with replacement and counting the correct ones is a Binomial(n, k/n) draw,
    so the counts are drawn directly: the same bootstrap distribution as resampling indices, without
    an n_boot × n index matrix (10,000 × 2,000 questions would be 160 MB). Like any percentile
    bootstrap, it collapses to a point when every answer is right (or every one wrong).
    """
    outcomes = np.asarray(correct, dtype=bool)
    n = outcomes.size
    if n == 0:
        raise ValueError("bootstrap_ci needs at least one question")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    rng = np.random.default_rng(seed)
    accuracies = rng.binomial(n, outcomes.mean(), size=n_boot) / n
    tail = (1 - confidence) / 2
    low, high = np.quantile(accuracies, [tail, 1 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test of `after` vs `before` on the same questions."""

    p_value: float  # two-sided
    gains: int  # questions wrong before and right after (McNemar's b)
    losses: int  # questions right before and wrong after (McNemar's c)
    n_questions: int


def mcnemar_exact(before: Sequence[bool], after: Sequence[bool]) -> McNemarResult:
    """Two-sided exact McNemar test: under H0 a discordant question is a gain or a loss with p = 1/2."""
    b, a = np.asarray(before, dtype=bool), np.asarray(after, dtype=bool)
    if b.shape != a.shape:
        raise ValueError(f"paired outcomes differ in length: {b.size} before, {a.size} after")
    gains, losses = int(np.sum(~b & a)), int(np.sum(b & ~a))
    discordant = gains + losses
    p_value = binomtest(gains, discordant, 0.5).pvalue if discordant else 1.0
    return McNemarResult(float(p_value), gains, losses, int(b.size))


def mcnemar_by_question(before: Mapping[str, bool], after: Mapping[str, bool]) -> McNemarResult:
    """McNemar's test on outcomes keyed by question id; both models must have answered the same questions."""
    if before.keys() != after.keys():
        only_before, only_after = before.keys() - after.keys(), after.keys() - before.keys()
        raise ValueError(
            "the two models were scored on different questions "
            f"({len(only_before)} only before, e.g. {sorted(only_before)[:3]}; "
            f"{len(only_after)} only after, e.g. {sorted(only_after)[:3]})"
        )
    ids = sorted(before)
    return mcnemar_exact([before[i] for i in ids], [after[i] for i in ids])
