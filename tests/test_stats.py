"""The paired statistics against hand-worked cases and against scipy (where installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zerosearch.stats import discordant_pairs, mcnemar_exact_p, paired_bootstrap_ci, paired_difference, pass_at_k


# ---------------------------------------------------------------------------------------------
# McNemar's exact test


@pytest.mark.parametrize("only_a, only_b, p", [
    (0, 0, 1.0),  # no discordant pair: nothing tells the systems apart
    (1, 0, 1.0),  # n = 1: 2 * C(1,0)/2^1 = 1
    (0, 5, 0.0625),  # n = 5: 2 * C(5,0)/2^5 = 2/32
    (6, 0, 0.03125),  # n = 6: 2 * 1/64
    (2, 10, 158 / 4096),  # n = 12: 2 * (C(12,0)+C(12,1)+C(12,2))/2^12 = 2 * (1+12+66)/4096 = 0.0386
    (3, 3, 1.0),  # a tie: 2 * (1+6+15+20)/64 = 84/64, capped at 1
    (4, 5, 1.0),  # 2 * (1+9+36+84+126)/512 = 512/512
    (1, 7, 0.0703125),  # n = 8: 2 * (C(8,0)+C(8,1))/2^8 = 2 * 9/256 = 18/256
])
def test_mcnemar_hand_worked(only_a, only_b, p):
    assert mcnemar_exact_p(only_a, only_b) == pytest.approx(p, rel=1e-12)
    assert mcnemar_exact_p(only_b, only_a) == pytest.approx(p, rel=1e-12)  # two-sided: symmetric


def test_discordant_pairs_count_who_alone_was_right():
    a = [1, 1, 0, 0, 1, 0]
    b = [1, 0, 1, 1, 0, 0]  # only a: questions 1 and 4; only b: questions 2 and 3
    assert discordant_pairs(a, b) == (2, 2)
    with pytest.raises(ValueError, match="0/1 outcomes"):
        discordant_pairs([0.5], [1.0])
    with pytest.raises(ValueError, match="one length"):
        discordant_pairs([1, 0], [1])
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_exact_p(-1, 2)


def test_mcnemar_large_counts_stay_exact_and_small():
    # n = 2000 discordant pairs, 900 vs 1100: a real difference; the exact sum does not overflow
    p = mcnemar_exact_p(900, 1100)
    assert 0 < p < 1e-5


def test_mcnemar_matches_scipy_binomtest():
    scipy_stats = pytest.importorskip("scipy.stats")
    for only_a in range(0, 16):
        for only_b in range(0, 16):
            if only_a + only_b == 0:
                continue
            expected = scipy_stats.binomtest(only_b, only_a + only_b, 0.5, alternative="two-sided").pvalue
            assert mcnemar_exact_p(only_a, only_b) == pytest.approx(expected, rel=1e-9, abs=1e-15), (only_a, only_b)
    expected = scipy_stats.binomtest(130, 130 + 170, 0.5).pvalue
    assert mcnemar_exact_p(170, 130) == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# The paired bootstrap


def test_bootstrap_of_one_change_in_ten_hand_worked():
    # b is right on one question more than a: d = b - a = nine 0s and one 1. A resample's mean is k/10 with
    # k ~ Binomial(10, 0.1): P(k=0) = 0.9^10 = 0.349, P(k<=1) = 0.349 + 10*0.1*0.9^9 = 0.736,
    # P(k<=2) = 0.736 + 45*0.01*0.9^8 = 0.930, P(k<=3) = 0.930 + 120*0.001*0.9^7 = 0.987.
    # So the 2.5% quantile is 0 (P(k=0) > 0.025) and the 97.5% quantile 0.3 (0.930 < 0.975 <= 0.987).
    a, b = [0] * 10, [0] * 9 + [1]
    assert paired_difference(a, b) == pytest.approx(0.1)
    assert paired_bootstrap_ci(a, b, resamples=20_000, seed=0) == pytest.approx((0.0, 0.3))
    assert paired_bootstrap_ci(b, a, resamples=20_000, seed=0) == pytest.approx((-0.3, 0.0))  # b - a flips


def test_bootstrap_keeps_pairs_together():
    # b = a + 0.25 on every question: every resample's difference is 0.25, however spread the scores are
    a = [0.0, 0.5, 0.25, 0.75, 0.1]
    b = [x + 0.25 for x in a]
    assert paired_bootstrap_ci(a, b, resamples=2000) == pytest.approx((0.25, 0.25))


def test_stratified_bootstrap_averages_over_strata_as_the_paper_averages_datasets():
    # stratum x: d = [1, 1], always 1; stratum y: d = nine 0s and one 1, interval [0, 0.3] (above).
    # The macro statistic is (1 + m_y) / 2: point (1 + 0.1) / 2 = 0.55, interval [(1+0)/2, (1+0.3)/2].
    # Pooled over the 12 questions the difference would be 3/12 = 0.25 instead.
    a = [0, 0] + [0] * 10
    b = [1, 1] + [0] * 9 + [1]
    strata = ["x", "x"] + ["y"] * 10
    assert paired_difference(a, b, strata) == pytest.approx(0.55)
    assert paired_difference(a, b) == pytest.approx(0.25)
    assert paired_bootstrap_ci(a, b, strata=strata, resamples=20_000) == pytest.approx((0.5, 0.65))


def test_bootstrap_is_seeded_and_checks_its_arguments():
    rng = np.random.default_rng(3)
    a, b = rng.random(150), rng.random(150)  # F1-like scores: the ends are not on a lattice
    assert paired_bootstrap_ci(a, b, seed=7) == paired_bootstrap_ci(a, b, seed=7)
    assert paired_bootstrap_ci(a, b, seed=7) != paired_bootstrap_ci(a, b, seed=8)
    lo, hi = paired_bootstrap_ci(a, b, confidence=0.5)
    lo95, hi95 = paired_bootstrap_ci(a, b)
    assert lo95 < lo < paired_difference(a, b) < hi < hi95
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap_ci([1, 0], [1])
    with pytest.raises(ValueError, match="at least one question"):
        paired_bootstrap_ci([], [])
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap_ci([1], [0], resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_ci([1], [0], confidence=1.0)
    with pytest.raises(ValueError, match="one label per score"):
        paired_bootstrap_ci([1, 0], [0, 1], strata=["x"])
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap_ci([math.nan], [0])


def test_bootstrap_matches_scipy_percentile_interval():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 200).astype(float)
    b = np.where(rng.random(200) < 0.2, 1.0 - a, a)  # b flips a fifth of a's outcomes
    ours = paired_bootstrap_ci(a, b, resamples=10_000, seed=1)
    theirs = scipy_stats.bootstrap((a, b), lambda x, y, axis=-1: np.mean(y - x, axis=axis), paired=True,
                                   vectorized=True, n_resamples=10_000, method="percentile",
                                   random_state=np.random.default_rng(2)).confidence_interval
    # both estimate the same quantiles; Monte Carlo error of each end is ~0.0015 here
    assert ours == pytest.approx((theirs.low, theirs.high), abs=0.01)


# ---------------------------------------------------------------------------------------------
# pass@k


@pytest.mark.parametrize("n, c, k, expected", [
    (8, 2, 4, 11 / 14),  # 1 - C(6,4)/C(8,4) = 1 - 15/70
    (8, 2, 1, 2 / 8),  # pass@1 is the share of correct samples
    (8, 0, 8, 0.0),
    (8, 1, 8, 1.0),  # pass@n: any sample correct
    (5, 1, 2, 0.4),  # 1 - C(4,2)/C(5,2) = 1 - 6/10
    (4, 3, 2, 1.0),  # n - c = 1 < k: every pair of samples holds a correct one
])
def test_pass_at_k_hand_worked(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12)


def test_pass_at_k_equals_the_combinatorial_definition_and_checks_arguments():
    for n in range(1, 11):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(4, 5, 1)
