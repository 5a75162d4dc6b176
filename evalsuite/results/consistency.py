"""The results file's consistency check: its metric rows must be what its samples give.

Every reader (``gate``, ``report``, ``judge``, ``baseline record``) loads results through
:class:`evalsuite.results.validate.Validator`, which calls :func:`check_consistency` once the fields are well typed.
A file edited by hand or written by another tool can hold numbers no run produced: an accuracy of 5.0 on a 0..1
scale, a confidence interval [7, 1], a metric over zero samples, a metric of 1.0 whose samples passed 1 of 2. A gate
would pass or fail on them silently; here each is one error naming the file and the field.

A metric's value is recomputed from its (battery, adapter) samples with the metric's recorded source and scale
(:func:`evalsuite.results.aggregate.spec_of`), as the runner computed it; samples whose ``finish_reason`` is
``not-run`` (a case that was not generated) count in no metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NoReturn

from evalsuite.results.aggregate import sample_values, scaled_mean, spec_of
from evalsuite.results.schema import Metric, Results, Sample

NOT_RUN = "not-run"  # a sample that was not generated: no verdict, in no metric's n
_TOLERANCE = 1e-9


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE)


def check_consistency(results: Results, fail: Callable[[str, str], NoReturn]) -> None:
    """``fail(where, message)`` on the first metric row its samples contradict."""
    groups: dict[tuple[str, str], list[Sample]] = {}
    for s in results.samples:
        if s.finish_reason != NOT_RUN:
            groups.setdefault((s.battery, s.adapter), []).append(s)
    for i, m in enumerate(results.metrics):
        _check_metric(m, groups.get((m.battery, m.adapter), []), f"metrics[{i}]", fail)


def _check_metric(m: Metric, samples: list[Sample], where: str, fail: Callable[[str, str], NoReturn]) -> None:
    label = f"{m.battery}.{m.name} of {m.adapter!r}"
    if m.n == 0:
        fail(f"{where}.n", f"{label} has n=0: a metric over no samples")
    if m.ci_low is not None and m.ci_high is not None:
        if m.ci_low > m.ci_high + _TOLERANCE:
            fail(where, f"{label}: confidence interval [{m.ci_low:g}, {m.ci_high:g}] has its low end above its high")
        if not (m.ci_low - _TOLERANCE <= m.value <= m.ci_high + _TOLERANCE):
            fail(f"{where}.value", f"{label} is {m.value:g}, outside its confidence interval "
                                   f"[{m.ci_low:g}, {m.ci_high:g}]")
    if len(samples) != m.n:
        fail(f"{where}.n", f"{label} says n={m.n} but the file holds {len(samples)} samples of {m.battery} for "
                           f"{m.adapter!r}")
    spec = spec_of(m)
    if spec is None:
        return  # an older row of a metric the built-in table does not know: nothing to recompute it with
    expected = scaled_mean(sample_values(samples, spec.source), spec.scale)
    if not _close(m.value, expected):
        fail(f"{where}.value", f"{label} is {m.value:g} but its {m.n} samples give {expected:g} "
                               f"({spec.scale:g} x mean of {spec.source})")
