"""Per-battery/adapter metric rows computed from samples: the one place metrics are aggregated.

The runner calls :func:`compute_metrics` once on all samples. Conventions the scorers follow:

- ``passed`` is the case's verdict; every battery gets ``accuracy`` = pass rate (Wilson CI).
- A ``not-run`` sample (the model was not let to finish) has no verdict and counts in no metric: every row is
  computed over the samples that ran, and ``n`` says how many those are.
- ``score`` is the case's continuous score in ``[0, 1]`` (character accuracy for uppercase-echo,
  token F1 for squad; for other batteries usually ``float(passed)``).
- Built-in extra metrics (:data:`BATTERY_METRICS`): ``runaway-turns.rate`` = fraction that ran
  away (Wilson); ``uppercase-echo.char_accuracy`` = mean score (bootstrap); ``squad.exact_match``
  = 100 x pass rate and ``squad.f1`` = 100 x mean score, bootstrap CIs, summed in order exactly like
  the official SQuAD v1.1 script so the numbers agree to the last digit.
- A user battery declares its own extra metrics with :class:`MetricSpec` (``extra=`` argument).

Each row records ``source``/``scale``/``higher_is_better`` so gates can redo paired tests per case.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from evalsuite.results.schema import Metric, Sample
from evalsuite.results.stats import DEFAULT_CONFIDENCE, DEFAULT_SEED, bootstrap_mean_ci, wilson_interval


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is computed: ``scale * mean(source values)`` with a ``method`` CI."""

    name: str
    source: str  # "passed" (1/0), "failed" (1 - passed) or "score"
    scale: float = 1.0
    higher_is_better: bool = True
    method: str = "bootstrap"  # "wilson" only makes sense for passed/failed with scale 1


ACCURACY = MetricSpec("accuracy", "passed", 1.0, True, "wilson")

BATTERY_METRICS: dict[str, tuple[MetricSpec, ...]] = {
    "runaway-turns": (MetricSpec("rate", "failed", 1.0, False, "wilson"),),
    "uppercase-echo": (MetricSpec("char_accuracy", "score", 1.0, True, "bootstrap"),),
    "squad": (
        MetricSpec("exact_match", "passed", 100.0, True, "bootstrap"),
        MetricSpec("f1", "score", 100.0, True, "bootstrap"),
    ),
}


def specs_for(battery: str, extra: Mapping[str, Sequence[MetricSpec]] | None = None) -> list[MetricSpec]:
    """``accuracy`` first, then the built-in metrics of the battery, then user-declared ones."""
    specs = [ACCURACY, *BATTERY_METRICS.get(battery, ())]
    names = {s.name for s in specs}
    for spec in (extra or {}).get(battery, ()):
        if spec.name in names:
            raise ValueError(f"battery {battery!r} declares metric {spec.name!r} twice")
        specs.append(spec)
        names.add(spec.name)
    return specs


def spec_of(metric: Metric) -> MetricSpec | None:
    """The spec of a metric row: recorded fields first, the built-in table for older rows."""
    if metric.source is not None:
        hib = metric.higher_is_better if metric.higher_is_better is not None else metric.source != "failed"
        return MetricSpec(metric.name, metric.source, metric.scale, hib, metric.method)
    for spec in specs_for(metric.battery):
        if spec.name == metric.name:
            return spec
    return None


def sample_values(samples: Iterable[Sample], source: str) -> list[float]:
    """Per-case values of ``source`` (unscaled): 1.0/0.0 for passed/failed, else the score; not-run samples are
    left out (no verdict)."""
    samples = [s for s in samples if s.ran]
    if source == "passed":
        return [1.0 if s.passed else 0.0 for s in samples]
    if source == "failed":
        return [0.0 if s.passed else 1.0 for s in samples]
    if source == "score":
        return [float(s.score or 0.0) for s in samples]
    raise ValueError(f"unknown metric source {source!r} (have: passed, failed, score)")


def scaled_mean(values: Sequence[float], scale: float) -> float:
    """``scale * sum / n`` with a left-to-right sum, the order the official SQuAD script uses."""
    total = 0.0
    for v in values:
        total += v
    return scale * total / len(values)


def metric_row(battery: str, adapter: str, spec: MetricSpec, samples: Sequence[Sample],
               confidence: float = DEFAULT_CONFIDENCE, seed: int = DEFAULT_SEED) -> Metric:
    """One metric row for one battery/adapter group."""
    values = sample_values(samples, spec.source)
    n = len(values)
    if n == 0:
        raise ValueError(f"no samples for {battery}/{adapter}")
    value = scaled_mean(values, spec.scale)
    if spec.method == "wilson":
        low, high = wilson_interval(int(sum(values)), n, confidence)
        ci: tuple[float | None, float | None] = (spec.scale * low, spec.scale * high)
    elif spec.method == "bootstrap":
        low, high = bootstrap_mean_ci([spec.scale * v for v in values], confidence, seed=seed)
        ci = (min(low, value), max(high, value))
    else:
        ci = (None, None)
    return Metric(battery=battery, adapter=adapter, name=spec.name, value=value, n=n,
                  method=spec.method, ci_low=ci[0], ci_high=ci[1], source=spec.source,
                  scale=spec.scale, higher_is_better=spec.higher_is_better)


def compute_metrics(samples: Sequence[Sample], extra: Mapping[str, Sequence[MetricSpec]] | None = None,
                    confidence: float = DEFAULT_CONFIDENCE, seed: int = DEFAULT_SEED) -> list[Metric]:
    """All metric rows for ``samples``, grouped by (battery, adapter) in order of first appearance; not-run samples
    count in none (a group with none that ran has no rows)."""
    groups: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        if s.ran:
            groups.setdefault((s.battery, s.adapter), []).append(s)
    rows: list[Metric] = []
    for (battery, adapter), group in groups.items():
        for spec in specs_for(battery, extra):
            rows.append(metric_row(battery, adapter, spec, group, confidence, seed))
    return rows
