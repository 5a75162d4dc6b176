"""Properties and known values of the statistics in evalsuite.results.stats."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsuite.results.stats import (
    binomial_two_sided_p,
    bootstrap_mean_ci,
    mcnemar_exact_p,
    paired_bootstrap_p,
    wilson_interval,
)


@given(st.integers(0, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_wilson_bounds_in_unit_interval_and_contain_estimate(kn: tuple[int, int], conf: float) -> None:
    k, n = kn
    low, high = wilson_interval(k, n, conf)
    assert 0.0 <= low <= high <= 1.0
    if n:
        assert low <= k / n <= high


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_is_symmetric_in_successes_and_failures(kn: tuple[int, int]) -> None:
    k, n = kn
    low, high = wilson_interval(k, n)
    low2, high2 = wilson_interval(n - k, n)
    assert low == pytest.approx(1 - high2, abs=1e-12)
    assert high == pytest.approx(1 - low2, abs=1e-12)


def test_wilson_known_value_and_edges() -> None:
    # 8/10 at 95%: the textbook interval is (0.4902, 0.9433).
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 5)[0] == 0.0
    assert wilson_interval(5, 5)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(6, 5)


def test_wilson_narrows_with_more_data() -> None:
    w10 = wilson_interval(5, 10)
    w1000 = wilson_interval(500, 1000)
    assert w1000[1] - w1000[0] < (w10[1] - w10[0]) / 5


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=1, max_size=40), st.integers(0, 2**31))
def test_bootstrap_ci_contains_mean_and_is_seeded(values: list[float], seed: int) -> None:
    low, high = bootstrap_mean_ci(values, seed=seed, n_resamples=200)
    mean = sum(values) / len(values)
    assert low <= mean + 1e-9 and mean - 1e-9 <= high
    assert min(values) - 1e-9 <= low and high <= max(values) + 1e-9
    assert bootstrap_mean_ci(values, seed=seed, n_resamples=200) == (low, high)


def test_bootstrap_ci_width_shrinks_with_n() -> None:
    small = [0.0, 1.0] * 5
    big = [0.0, 1.0] * 500
    ws = bootstrap_mean_ci(small)
    wb = bootstrap_mean_ci(big)
    assert (wb[1] - wb[0]) < (ws[1] - ws[0]) / 5
    with pytest.raises(ValueError):
        bootstrap_mean_ci([])


def test_binomial_known_values() -> None:
    assert binomial_two_sided_p(0, 0) == 1.0
    assert binomial_two_sided_p(0, 1) == 1.0
    assert binomial_two_sided_p(0, 5) == pytest.approx(2 / 32)
    assert binomial_two_sided_p(1, 10) == pytest.approx(2 * 11 / 1024)
    assert binomial_two_sided_p(5, 10) == 1.0
    # Large n stays exact and finite (integer arithmetic).
    assert 0.0 < binomial_two_sided_p(400, 1000) < 1e-9


@given(st.integers(0, 200), st.integers(0, 200))
def test_mcnemar_symmetric_and_a_probability(b: int, c: int) -> None:
    p = mcnemar_exact_p(b, c)
    assert p == mcnemar_exact_p(c, b)
    assert 0.0 < p <= 1.0
    if b == c:
        assert p == 1.0


@given(st.integers(0, 60))
def test_mcnemar_monotone_in_imbalance(b: int) -> None:
    # More one-sided flips can only make the evidence stronger.
    assert mcnemar_exact_p(b + 1, 0) <= mcnemar_exact_p(b, 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=30),
       st.integers(0, 2**31))
def test_paired_bootstrap_symmetric(pairs: list[tuple[float, float]], seed: int) -> None:
    a = [x for x, _ in pairs]
    b = [y for _, y in pairs]
    d_ab, p_ab = paired_bootstrap_p(a, b, n_resamples=300, seed=seed)
    d_ba, p_ba = paired_bootstrap_p(b, a, n_resamples=300, seed=seed)
    assert p_ab == p_ba
    assert d_ab == -d_ba
    assert 0.0 < p_ab <= 1.0


@given(st.lists(st.floats(0, 100), min_size=1, max_size=30))
def test_paired_bootstrap_identical_is_not_significant(a: list[float]) -> None:
    diff, p = paired_bootstrap_p(a, list(a))
    assert diff == 0.0 and p == 1.0


def test_paired_bootstrap_detects_a_real_drop() -> None:
    a = [0.9, 0.8, 1.0, 0.7, 0.95, 0.85] * 10
    b = [x - 0.3 + 0.05 * (i % 3) for i, x in enumerate(a)]
    diff, p = paired_bootstrap_p(a, b)
    assert diff < -0.2 and p < 0.01
    # A constant shift on a single case is no evidence at all.
    assert paired_bootstrap_p([1.0], [0.0]) == (-1.0, 1.0)
    assert math.isclose(paired_bootstrap_p([1.0] * 6, [0.0] * 6)[1], 2 / 64)
