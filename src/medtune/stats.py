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
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)
    return _percentile_interval(rng.binomial(n, outcomes.mean(), size=n_boot) / n, confidence)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")


def _percentile_interval(accuracies: np.ndarray, confidence: float) -> tuple[float, float]:
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


def seed_bootstrap_ci(
    correct: np.ndarray, confidence: float = 0.95, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> tuple[float, float]:
    """Two-level percentile bootstrap of the mean accuracy over seeds × questions (`correct` is seeds × questions).

    Each resample draws seeds with replacement and, independently, questions with replacement (the same
    questions for every drawn seed, as every seed answered the same exam), so the interval covers both
    the luck of the training run and the luck of the exam. With one seed it is the question bootstrap.
    """
    outcomes = np.asarray(correct, dtype=float)
    if outcomes.ndim != 2 or 0 in outcomes.shape:
        raise ValueError("seed_bootstrap_ci needs a seeds × questions matrix with at least one of each")
    _check_confidence(confidence)
    n_seeds, n_questions = outcomes.shape
    rng = np.random.default_rng(seed)
    accuracies = np.empty(n_boot)
    for start in range(0, n_boot, 1000):  # batches keep the index matrix small for large exams
        size = min(1000, n_boot - start)
        seeds = rng.integers(n_seeds, size=(size, n_seeds))
        questions = rng.integers(n_questions, size=(size, n_questions))
        per_question = outcomes[:, questions].transpose(1, 0, 2)  # (size, n_seeds, n_questions)
        picked = np.take_along_axis(per_question, seeds[:, :, None], axis=1)
        accuracies[start : start + size] = picked.mean(axis=(1, 2))
    return _percentile_interval(accuracies, confidence)


@dataclass(frozen=True)
class PairedResult:
    """A tuned model against its base on the same questions; with several seeds, per-question accuracy averaged."""

    p_value: float  # two-sided
    gains: int  # questions the tuned model answers right more often than the base
    losses: int  # questions it answers right less often
    n_questions: int
    test: str  # "mcnemar" (one seed) | "sign-flip" (several seeds)


def paired_test(base: np.ndarray, tuned: np.ndarray, n_perm: int = DEFAULT_N_BOOT, seed: int = 0) -> PairedResult:
    """Tuned vs base over seeds × questions matrices of correctness.

    One seed: the exact McNemar test. Several: each question's difference in accuracy averaged over seeds,
    d_q = mean_s tuned[s, q] - mean_s base[s, q], is tested by a two-sided sign-flip permutation test over
    questions (questions are the independent units; a seed's runs share them, so pooling seed × question pairs
    as if independent would overstate the evidence). With one seed the sign-flip test on d ∈ {-1, 0, 1} is the
    exact McNemar test, so the two agree where both apply.
    """
    base, tuned = np.asarray(base, dtype=float), np.asarray(tuned, dtype=float)
    if base.shape[1:] != tuned.shape[1:]:
        raise ValueError(f"paired outcomes differ in length: {base.shape[1]} base, {tuned.shape[1]} tuned")
    if tuned.shape[0] == 1 and base.shape[0] == 1:
        result = mcnemar_exact(base[0].astype(bool), tuned[0].astype(bool))
        return PairedResult(result.p_value, result.gains, result.losses, result.n_questions, "mcnemar")
    diff = tuned.mean(axis=0) - base.mean(axis=0)
    observed = abs(diff.sum())
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(n_perm, diff.size))
    extreme = int(np.sum(np.abs(signs @ diff) >= observed - 1e-12))
    p_value = (extreme + 1) / (n_perm + 1)
    return PairedResult(float(p_value), int(np.sum(diff > 0)), int(np.sum(diff < 0)), int(diff.size), "sign-flip")


def seed_flips(tuned: np.ndarray) -> int:
    """Questions whose correctness is not the same in every seed's run: how much of a cell is noise."""
    outcomes = np.asarray(tuned, dtype=bool)
    return int(np.sum(outcomes.any(axis=0) & ~outcomes.all(axis=0)))
