"""The statistics evalsuite reports, each implemented exactly once (stdlib + numpy only).

- :func:`wilson_interval` for pass rates (accuracy, runaway rate): well behaved at 0 and at n,
  unlike the normal approximation, which matters with 4-case batteries.
- :func:`bootstrap_mean_ci`: seeded percentile bootstrap of a mean, for continuous scores (F1).
- :func:`mcnemar_exact_p`: exact two-sided binomial test on the discordant pairs of two systems
  scored pass/fail on the same cases (the cases that flipped).
- :func:`paired_bootstrap_p`: seeded paired bootstrap for a difference of means on paired
  continuous scores; :func:`bootstrap_p_floor` is the smallest p it can return.
- :func:`paired_bootstrap_ci`: the confidence interval of that difference (the percentile bootstrap
  of the per-case differences, i.e. :func:`bootstrap_mean_ci` applied to them).

Everything is deterministic for a given seed so a re-gated results file gives the same verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    With ``n == 0`` nothing is known and the interval is the whole ``[0, 1]``.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n)) / (1.0 + z2n)
    low, high = centre - half, centre + half
    # Exact at the edges (rounding can leave 1e-17 off) and never excluding the point estimate.
    low = 0.0 if successes == 0 else max(0.0, min(low, p))
    high = 1.0 if successes == n else min(1.0, max(high, p))
    return low, high


def bootstrap_mean_ci(
    values: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    The bounds are clipped so they always contain the observed mean (percentiles of a small
    resample set can otherwise miss it by a rounding error).
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap of an empty sample")
    _z(confidence)  # validates the level
    mean = float(data.mean())
    if data.size == 1 or np.all(data == data[0]):
        return mean, mean
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.size, size=(n_resamples, data.size))
    means = data[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return min(float(low), mean), max(float(high), mean)


def binomial_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips (p = 1/2).

    Computed with exact integers so it is exact for any n and symmetric in ``k`` and ``n - k`` by
    construction.
    """
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 1.0
    tail = min(k, n - k)
    if 2 * tail == n:
        return 1.0
    term = mass = 1  # C(n, 0); each next binomial coefficient from the previous one, exactly
    for i in range(tail):
        term = term * (n - i) // (i + 1)
        mass += term
    return min(1.0, 2 * mass / 2**n)


def mcnemar_exact_p(pass_to_fail: int, fail_to_pass: int) -> float:
    """Exact McNemar test: two-sided binomial test on the discordant pairs only.

    Cases that passed (or failed) under both systems carry no information about which is
    better; under the null each flipped case is equally likely to flip either way.
    """
    return binomial_two_sided_p(min(pass_to_fail, fail_to_pass), pass_to_fail + fail_to_pass)


def paired_bootstrap_p(
    a: Sequence[float],
    b: Sequence[float],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """Paired bootstrap test of ``mean(b) - mean(a) == 0``; returns ``(mean_difference, p)``.

    Resamples the per-case differences after centring them on zero (the null) and counts
    resampled means at least as extreme as the observed one, two-sided, with the usual +1
    correction so p is never exactly 0. Swapping ``a`` and ``b`` negates every difference, which
    leaves ``|mean|`` and hence p unchanged (IEEE rounding is symmetric under negation).
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.size} vs {y.size}")
    if x.size == 0:
        raise ValueError("paired bootstrap of empty samples")
    diff = y - x
    observed = float(diff.mean())
    if np.all(diff == diff[0]):
        # No variation, so the bootstrap null collapses to a point and would call one changed case
        # "significant". A zero difference is not significant; a constant non-zero one gets the
        # exact sign test (every case moved the same way: 2 / 2**n).
        return observed, 1.0 if observed == 0.0 else binomial_two_sided_p(0, int(diff.size))
    centred = diff - observed
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(n_resamples, diff.size))
    means = centred[idx].mean(axis=1)
    extreme = int(np.count_nonzero(np.abs(means) >= abs(observed) - 1e-12))
    return observed, (extreme + 1) / (n_resamples + 1)


def bootstrap_p_floor(n_resamples: int = DEFAULT_RESAMPLES) -> float:
    """The smallest p :func:`paired_bootstrap_p` returns (no resample as extreme): ``1 / (n + 1)``.

    A p-value there means "below the resolution of the test", not that exact number.
    """
    return 1.0 / (n_resamples + 1)


BOOTSTRAP_TEST = "paired bootstrap"


def fmt_p(p: float, test: str) -> str:
    """``p<0.0005`` at the bootstrap's floor (no resample was as extreme: the exact value is unknown).

    Shared by the gates' reasons and the report so a p-value reads the same everywhere.
    """
    floor = bootstrap_p_floor()
    if test.startswith(BOOTSTRAP_TEST) and p <= floor * (1 + 1e-9):
        return f"p<{floor:.1g}"
    return f"p={p:.2g}" if p < 0.001 else f"p={p:.3g}"


def paired_bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """Confidence interval of ``mean(b) - mean(a)`` for paired samples: resampling cases (pairs), so
    the correlation between the two systems on the same case narrows it as it should."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.size} vs {y.size}")
    return bootstrap_mean_ci((y - x).tolist(), confidence, n_resamples, seed)
