"""Metric cells and the summary table: each candidate's delta against its control, with CI, p and verdict.

The p-value is :func:`evalsuite.gates.evaluate.compare_paired`'s (exact McNemar on pass/fail metrics, paired
bootstrap on scores), so the report and the gates never disagree; the 95% CI of the delta is the paired bootstrap
of the per-case differences (:func:`evalsuite.results.stats.paired_bootstrap_ci`) on the same paired cases.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalsuite.gates.evaluate import compare_paired, paired_samples
from evalsuite.report.columns import Column
from evalsuite.results.aggregate import sample_values, spec_of
from evalsuite.results.schema import Metric
from evalsuite.results.stats import fmt_p, paired_bootstrap_ci


def fmt_value(value: float, scale: float) -> str:
    return f"{value:.1f}" if scale >= 10 else f"{value:.3f}"


def fmt_delta(value: float, scale: float) -> str:
    return f"{value:+.1f}" if scale >= 10 else f"{value:+.3f}"


@dataclass
class Delta:
    """``candidate - control`` on the cases both columns have."""

    value: float
    low: float
    high: float
    ref_value: float  # the control's and the candidate's metric on the paired cases
    cand_value: float
    p: float
    test: str
    n: int
    scale: float
    significant: bool
    direction: str  # "better", "worse" or "" (no change)
    lost: int = 0  # pass->fail flips among the paired cases
    gained: int = 0  # fail->pass

    @property
    def text(self) -> str:
        return fmt_delta(self.value, self.scale)

    @property
    def ci(self) -> str:
        return f"{fmt_delta(self.low, self.scale)} to {fmt_delta(self.high, self.scale)}"

    @property
    def p_text(self) -> str:
        return fmt_p(self.p, self.test)

    @property
    def verdict(self) -> str:
        if self.significant and self.direction:
            return self.direction
        return "no change" if self.value == 0 and not self.lost and not self.gained else "not significant"

    @property
    def size(self) -> float:
        """``|delta|`` on a 0-1 scale, so accuracy and SQuAD F1 (0-100) sort together."""
        return abs(self.value) / self.scale if self.scale else abs(self.value)


def paired_delta(col: Column, metric: Metric, alpha: float) -> Delta | None:
    spec = spec_of(metric)
    if col.ref is None or spec is None:
        return None
    ref = col.ref.results.samples_for(metric.battery, col.ref.name)
    cand = col.results.samples_for(metric.battery, col.name)
    cmp = compare_paired(spec, ref, cand)
    if cmp is None:
        return None
    pairs = paired_samples(cand, ref)
    a = [spec.scale * v for v in sample_values([r for r, _ in pairs], spec.source)]
    b = [spec.scale * v for v in sample_values([c for _, c in pairs], spec.source)]
    low, high = paired_bootstrap_ci(a, b)
    value = cmp.value - cmp.ref_value
    direction = "" if value == 0 else ("better" if (value > 0) == spec.higher_is_better else "worse")
    lost = sum(f.direction == "pass->fail" for f in cmp.flips)
    return Delta(value, low, high, cmp.ref_value, cmp.value, cmp.p_value, cmp.test, cmp.n, spec.scale,
                 cmp.p_value < alpha, direction, lost, len(cmp.flips) - lost)


@dataclass
class MetricCell:
    metric: Metric
    text: str
    ci: str
    delta: Delta | None = None


def metric_cell(col: Column, metric: Metric, alpha: float) -> MetricCell:
    ci = ""
    if metric.ci_low is not None and metric.ci_high is not None:
        ci = f"{fmt_value(metric.ci_low, metric.scale)}–{fmt_value(metric.ci_high, metric.scale)}"
    return MetricCell(metric, fmt_value(metric.value, metric.scale), ci, paired_delta(col, metric, alpha))


@dataclass
class MetricRow:
    name: str
    cells: list[MetricCell | None]


@dataclass
class SummaryRow:
    """One line of the answer: a metric of a battery, a candidate against its control."""

    battery: str
    metric: str
    control: Column
    candidate: Column
    control_value: str
    value: str
    delta: Delta
    caveat: str = ""  # e.g. the two columns ran the battery with different token caps


def summary_rows(battery: str, cols: list[Column], rows: list[MetricRow]) -> list[SummaryRow]:
    """The deltas of a battery; ``accuracy`` is left out where the battery's own pass/fail metric
    (``squad.exact_match``, ``runaway-turns.rate``) says the same thing on another scale."""
    out = []
    for row in [r for r in rows if not (r.name == "accuracy" and _restated(rows))]:
        for col, cell in zip(cols, row.cells, strict=True):
            if cell is None or cell.delta is None or col.ref is None:
                continue
            d = cell.delta
            caveat = (f"max_new_tokens {col.cap(battery)} vs {col.ref.cap(battery)}"
                      if col.cap(battery) != col.ref.cap(battery) else "")
            out.append(SummaryRow(battery, row.name, col.ref, col, fmt_value(d.ref_value, d.scale),
                                  fmt_value(d.cand_value, d.scale), d, caveat))
    return out


def _restated(rows: list[MetricRow]) -> bool:
    """Whether another metric is computed from the pass/fail verdicts, as accuracy is."""
    return any(row.name != "accuracy" and spec is not None and spec.source in ("passed", "failed")
               for row in rows for cell in row.cells if cell is not None
               for spec in [spec_of(cell.metric)])


def sort_summary(rows: list[SummaryRow]) -> list[SummaryRow]:
    """Largest change first (on a 0-1 scale); ties keep battery order."""
    return sorted(rows, key=lambda r: -r.delta.size)
