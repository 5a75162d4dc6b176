"""The statistics at their stated levels, against independent values: the properties in test_stats.py (bounds,
symmetry, seeding) hold just as well for an interval at the wrong confidence or a one-sided p-value."""

from __future__ import annotations

import pytest

from evalsuite.results.stats import bootstrap_mean_ci, mcnemar_exact_p, paired_bootstrap_p, wilson_interval


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_bootstrap_ci_has_its_stated_level(confidence: float) -> None:
    """50 ones in 100: the percentile bootstrap of the mean agrees with the Wilson interval at the same level
    (textbook 95%: 0.404-0.596) to within the bootstrap's own step of 0.01; a 90% interval sits 0.016 inside."""
    low, high = bootstrap_mean_ci([0.0, 1.0] * 50, confidence=confidence)
    w_low, w_high = wilson_interval(50, 100, confidence)
    assert abs(low - w_low) <= 0.01 and abs(high - w_high) <= 0.01


def test_mcnemar_known_values() -> None:
    # two-sided exact binomial on the discordant pairs only, p = 1/2
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact_p(2, 10) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact_p(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact_p(3, 3) == 1.0 and mcnemar_exact_p(0, 0) == 1.0


def test_paired_bootstrap_p_is_near_the_normal_approximation_on_a_clear_shift() -> None:
    """100 paired differences with a mean of about 2.3 standard errors: the two-sided normal-approximation p is
    about 0.02, and the bootstrap p lies within 30% of it; a one-sided or uncentred bootstrap would be off by a
    factor of two or more."""
    from statistics import NormalDist, fmean, stdev

    diffs = [0.1 * ((i * 7) % 11 - 5) + 0.08 for i in range(100)]
    a = [0.5] * 100
    b = [0.5 + d for d in diffs]
    z = fmean(diffs) / (stdev(diffs) / 10)
    normal_p = 2 * (1 - NormalDist().cdf(z))
    diff, p = paired_bootstrap_p(a, b, n_resamples=4000)
    assert diff == pytest.approx(fmean(diffs)) and 0.01 < normal_p < 0.03
    assert 0.7 * normal_p <= p <= 1.3 * normal_p
