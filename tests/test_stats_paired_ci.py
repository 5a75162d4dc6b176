"""The paired bootstrap CI of a difference of means (the report's delta CIs), against known values."""

from __future__ import annotations

from statistics import NormalDist, fmean, stdev

import pytest

from evalsuite.results.stats import bootstrap_p_floor, paired_bootstrap_ci, paired_bootstrap_p


def test_two_pairs_give_the_exact_bootstrap_distribution() -> None:
    """Differences 0 and 1: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the 2.5% and
    97.5% percentiles are exactly 0 and 1."""
    assert paired_bootstrap_ci([0.0, 0.0], [0.0, 1.0]) == (0.0, 1.0)


def test_constant_difference_is_a_point() -> None:
    assert paired_bootstrap_ci([0.2, 0.5, 0.9], [0.3, 0.6, 1.0]) == pytest.approx((0.1, 0.1))


def test_near_the_normal_interval_on_many_cases() -> None:
    """400 paired differences: the percentile interval agrees with mean +- 1.96 standard errors to within a tenth
    of a standard error; an unpaired interval (resampling a and b apart) would be about twice as wide here."""
    a = [0.1 * ((i * 13) % 17) for i in range(400)]
    diffs = [0.05 * ((i * 7) % 11 - 5) + 0.1 for i in range(400)]
    b = [x + d for x, d in zip(a, diffs, strict=True)]
    se = stdev(diffs) / 20
    z = NormalDist().inv_cdf(0.975)
    low, high = paired_bootstrap_ci(a, b, n_resamples=4000)
    assert low == pytest.approx(fmean(diffs) - z * se, abs=0.1 * se)
    assert high == pytest.approx(fmean(diffs) + z * se, abs=0.1 * se)


def test_swapping_negates_and_lengths_must_match() -> None:
    a, b = [0.0, 1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0, 1.0]
    low, high = paired_bootstrap_ci(a, b)
    assert paired_bootstrap_ci(b, a) == pytest.approx((-high, -low))
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap_ci([1.0], [1.0, 2.0])


def test_p_floor_is_what_the_test_returns_when_nothing_is_as_extreme() -> None:
    a = [0.0] * 50
    b = [1.0, 0.9] * 25  # every case moved up, with variation: no centred resample reaches the mean
    _, p = paired_bootstrap_p(a, b, n_resamples=500)
    assert p == bootstrap_p_floor(500) == 1 / 501
