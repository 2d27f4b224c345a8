"""Bootstrap intervals and McNemar's exact test on cases small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medtune.stats import bootstrap_ci, mcnemar_by_question, mcnemar_exact


def _outcomes(n_right: int, n: int) -> list[bool]:
    return [True] * n_right + [False] * (n - n_right)


def test_mcnemar_counts_discordant_pairs_and_matches_the_binomial_tail():
    # 10 gains, 2 losses, 5 right both times, 3 wrong both times.
    before = _outcomes(0, 10) + [True] * 2 + [True] * 5 + [False] * 3
    after = [True] * 10 + [False] * 2 + [True] * 5 + [False] * 3
    result = mcnemar_exact(before, after)
    assert (result.gains, result.losses, result.n_questions) == (10, 2, 20)
    # Two-sided exact p = 2 · P(X ≤ 2), X ~ Binomial(12, 1/2) = 2 · (1 + 12 + 66) / 4096.
    assert result.p_value == pytest.approx(158 / 4096)


def test_mcnemar_is_symmetric_in_gains_and_losses():
    before, after = [True] * 10 + [False] * 2, [False] * 10 + [True] * 2
    assert mcnemar_exact(before, after).p_value == pytest.approx(mcnemar_exact(after, before).p_value)
    assert mcnemar_exact(before, after).gains == 2


def test_identical_predictions_give_p_one():
    outcomes = [True, False, True, True, False]
    result = mcnemar_exact(outcomes, outcomes)
    assert (result.p_value, result.gains, result.losses) == (1.0, 0, 0)


def test_one_discordant_question_is_no_evidence():
    assert mcnemar_exact([False, True], [True, True]).p_value == pytest.approx(1.0)


def test_mcnemar_rejects_unpaired_lengths():
    with pytest.raises(ValueError, match="length"):
        mcnemar_exact([True, False], [True])


def test_mcnemar_by_question_pairs_by_id_not_by_order():
    before = {"q1": False, "q2": True, "q3": False}
    after = {"q3": True, "q1": True, "q2": True}  # another order, two gains
    result = mcnemar_by_question(before, after)
    assert (result.gains, result.losses) == (2, 0)
    assert result.p_value == pytest.approx(0.5)  # 2 · (1/2)²


def test_mcnemar_by_question_names_questions_only_one_model_answered():
    with pytest.raises(ValueError, match=r"different questions.*'q9'"):
        mcnemar_by_question({"q1": True, "q9": False}, {"q1": True})


def test_ci_contains_the_accuracy_and_is_seeded():
    correct = _outcomes(37, 60)
    low, high = bootstrap_ci(correct, seed=3)
    assert low < 37 / 60 < high
    assert bootstrap_ci(correct, seed=3) == (low, high)


def test_ci_width_shrinks_with_more_questions():
    widths = [np.subtract(*bootstrap_ci(_outcomes(n // 2, n))[::-1]) for n in (20, 200, 2000)]
    assert widths[0] > widths[1] > widths[2] > 0
    # The normal approximation: width ≈ 2 · 1.96 · sqrt(p(1-p)/n) = 0.0438 at n = 2000.
    assert widths[2] == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 2000), rel=0.1)


def test_ci_matches_resampling_question_indices():
    """Drawing Binomial counts is the same bootstrap as resampling questions with replacement."""
    correct = np.array(_outcomes(31, 80))
    rng = np.random.default_rng(7)
    resampled = correct[rng.integers(0, correct.size, size=(20_000, correct.size))].mean(axis=1)
    by_index = np.quantile(resampled, [0.025, 0.975])
    assert bootstrap_ci(correct, n_boot=20_000) == pytest.approx(tuple(by_index), abs=1 / 80 + 1e-9)


def test_ci_level_and_resample_count_are_configurable():
    correct = _outcomes(50, 100)
    low95, high95 = bootstrap_ci(correct, n_boot=2000)
    low80, high80 = bootstrap_ci(correct, confidence=0.8, n_boot=2000)
    assert low95 < low80 < high80 < high95


def test_ci_degenerate_and_invalid_inputs():
    assert bootstrap_ci([True] * 5) == (1.0, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([True], confidence=95)


def test_sign_flip_test_with_one_seed_is_mcnemars_test():
    from medtune.stats import paired_test

    rng = np.random.default_rng(3)
    base, tuned = rng.random((1, 60)) < 0.3, rng.random((1, 60)) < 0.5
    one = paired_test(base, tuned)
    assert one.test == "mcnemar" and one.p_value == mcnemar_exact(base[0], tuned[0]).p_value
    # the permutation test over the same one-seed differences approximates the exact test
    two = paired_test(np.repeat(base, 2, axis=0), np.repeat(tuned, 2, axis=0), n_perm=20_000)
    assert two.test == "sign-flip" and two.p_value == pytest.approx(one.p_value, abs=0.01)
    assert (two.gains, two.losses) == (one.gains, one.losses)


def test_seed_bootstrap_widens_with_seed_spread():
    from medtune.stats import seed_bootstrap_ci

    same = np.tile(np.arange(100) < 50, (3, 1))  # three identical seeds
    spread = np.stack([np.arange(100) < n for n in (35, 50, 65)])  # same mean, seeds disagree
    low_same, high_same = seed_bootstrap_ci(same, n_boot=4000)
    low_spread, high_spread = seed_bootstrap_ci(spread, n_boot=4000)
    assert low_same < 0.5 < high_same and high_spread - low_spread > (high_same - low_same) * 1.3
