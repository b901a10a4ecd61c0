"""Statistics for comparing two evaluations of the same questions, and for sampled answers.

Pure functions over per-question scores (numpy and the standard library only; no model, no files):

* :func:`paired_bootstrap_ci`: a percentile bootstrap confidence interval of the difference of two paired
  means (optionally a mean over strata, such as the papers' average over datasets);
* :func:`mcnemar_exact_p`: McNemar's exact two-sided test of paired 0/1 outcomes (EM);
* :func:`pass_at_k`: the unbiased pass@k estimator of Chen et al. (2021) from n samples with c correct.

``zerosearch compare`` (:mod:`zerosearch.paired`) and the before/after table of a run use the first two;
``zerosearch eval --samples`` the third.
"""

from __future__ import annotations

import math
from typing import Hashable, Sequence

import numpy as np

__all__ = ["discordant_pairs", "mcnemar_exact_p", "paired_bootstrap_ci", "paired_difference", "pass_at_k"]

# index draws per chunk of the bootstrap (resamples x questions), so that memory stays ~16 MB at any size
_CHUNK_DRAWS = 2_000_000


def _paired_arrays(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_arr.ndim != 1 or a_arr.shape != b_arr.shape:
        raise ValueError(f"paired scores must be two 1-D sequences of one length, got shapes "
                         f"{a_arr.shape} and {b_arr.shape}")
    if a_arr.size == 0:
        raise ValueError("no paired scores: at least one question is needed")
    if not (np.isfinite(a_arr).all() and np.isfinite(b_arr).all()):
        raise ValueError("paired scores must be finite numbers")
    return a_arr, b_arr


def _strata_indices(n: int, strata: Sequence[Hashable] | None) -> list[np.ndarray]:
    """The positions of each stratum, strata in order of first appearance (one stratum when None)."""
    if strata is None:
        return [np.arange(n)]
    if len(strata) != n:
        raise ValueError(f"{len(strata)} stratum labels for {n} paired scores; give one label per score")
    groups: dict[Hashable, list[int]] = {}
    for i, label in enumerate(strata):
        groups.setdefault(label, []).append(i)
    return [np.asarray(positions) for positions in groups.values()]


def paired_difference(a: Sequence[float], b: Sequence[float], strata: Sequence[Hashable] | None = None) -> float:
    """``mean(b) - mean(a)`` over paired scores; with ``strata``, the mean over strata of each stratum's
    difference (every stratum weighs the same, as the papers' average over datasets does)."""
    a_arr, b_arr = _paired_arrays(a, b)
    d = b_arr - a_arr
    return float(np.mean([d[idx].mean() for idx in _strata_indices(len(d), strata)]))


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], *, strata: Sequence[Hashable] | None = None,
                        resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap confidence interval of :func:`paired_difference` (``b - a``).

    Definition: draw ``resamples`` times a resample of the questions, with replacement and of the same
    size, keeping each question's two scores together (the pairing); compute the difference of means on
    each; the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those
    differences (numpy's default linear interpolation). With ``strata`` (e.g. a dataset per question) the
    questions are resampled within their stratum, each stratum keeping its size, and the statistic is the
    unweighted mean over strata of the within-stratum differences (a stratified bootstrap of the
    macro average).

    Source: Efron & Tibshirani (1993), *An Introduction to the Bootstrap*, ch. 13 (percentile interval);
    for paired system comparisons in NLP, Koehn (2004) and Berg-Kirkpatrick et al. (2012). The same
    interval as ``scipy.stats.bootstrap(..., paired=True, method="percentile")`` up to Monte Carlo error;
    scipy's default BCa correction is not applied.

    Args:
        a, b: per-question scores of the two systems on the same questions, in the same order (shape [N]).
        strata: None, or one hashable label per question.
        resamples: bootstrap draws (>= 1; 10,000 gives the interval's ends to about ±0.1 points on EM).
        confidence: the interval's coverage, in (0, 1).
        seed: the numpy generator's seed; the same data, seed and resamples give the same interval.

    Returns:
        ``(lo, hi)`` in the units of the scores.

    Raises:
        ValueError: unequal lengths, no scores, non-finite scores, a bad ``resamples`` or ``confidence``.
    """
    a_arr, b_arr = _paired_arrays(a, b)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    d = b_arr - a_arr
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    groups = _strata_indices(len(d), strata)
    for idx in groups:  # each stratum's resampled means, drawn in chunks of resamples
        values = d[idx]
        rows = max(1, _CHUNK_DRAWS // len(values))
        for start in range(0, resamples, rows):
            stop = min(resamples, start + rows)
            draws = rng.integers(0, len(values), size=(stop - start, len(values)))
            total[start:stop] += values[draws].mean(axis=1)
    stats = total / len(groups)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [tail, 1 - tail])
    return float(lo), float(hi)


def discordant_pairs(a: Sequence[float], b: Sequence[float]) -> tuple[int, int]:
    """``(only_a, only_b)``: how many questions only ``a`` got right (1 vs 0), and only ``b``.

    Raises ValueError unless every outcome is 0 or 1 (EM is; F1 is not a 0/1 outcome)."""
    a_arr, b_arr = _paired_arrays(a, b)
    if not (np.isin(a_arr, (0.0, 1.0)).all() and np.isin(b_arr, (0.0, 1.0)).all()):
        raise ValueError("McNemar's test takes 0/1 outcomes (EM), got other values")
    return int(np.sum((a_arr == 1) & (b_arr == 0))), int(np.sum((a_arr == 0) & (b_arr == 1)))


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """McNemar's exact two-sided p-value from the discordant pair counts.

    Under the null hypothesis (both systems equally likely to be the one right on a question where they
    disagree), ``only_b`` is Binomial(n, 1/2) with ``n = only_a + only_b``. The p-value doubles the smaller
    tail: ``p = min(1, 2 * sum_{i=0}^{min(only_a, only_b)} C(n, i) / 2^n)``, computed exactly in integers;
    ``p = 1`` when there is no discordant pair (nothing tells the systems apart). For p = 1/2 the binomial
    is symmetric, so this equals ``scipy.stats.binomtest(only_b, n, 0.5).pvalue`` (which sums the outcomes
    no more likely than the one seen).

    Source: McNemar (1947); the exact (binomial) form as in Fagerland, Lydersen & Laake (2013),
    "The McNemar test for binary matched-pairs data", and statsmodels' ``mcnemar(exact=True)``.

    Raises:
        ValueError: a negative count.
    """
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a} and {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**n)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of pass@k, the chance that at least one of k samples is correct, from n >= k
    samples of which c are correct: ``1 - C(n - c, k) / C(n, k)`` (1 when ``n - c < k``).

    Source: Chen et al. (2021), "Evaluating Large Language Models Trained on Code" (HumanEval), eq. 1 and
    its numerically stable form ``1 - prod_{i=n-c+1}^{n} (1 - k / i)``, used here. ``pass_at_k(n, c, 1)``
    is ``c / n``; ``pass_at_k(n, c, n)`` is 1 if any sample is correct, else 0.

    Raises:
        ValueError: unless ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
