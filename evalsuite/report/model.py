"""The report's view model: plain data the HTML and Markdown templates render.

Columns are (results file, adapter) pairs. Every column has a reference column for deltas: the
first column, or with ``--baseline`` the baseline column paired the way regression gates pair
(same adapter name, else same role). Deltas carry the paired test's p-value from
:func:`evalsuite.gates.evaluate.compare_paired`, so the report and the gates never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.gates.evaluate import GateResult, compare_paired, pair_adapter
from evalsuite.report.textdiff import Segment, diff_segments
from evalsuite.results.aggregate import spec_of
from evalsuite.results.schema import AdapterInfo, Metric, Results, Sample

TEN_BATTERY = "llama32-ten"
MAX_OUTPUT_CHARS = 4000


@dataclass
class Column:
    label: str
    file: str
    results: Results
    adapter: AdapterInfo
    is_baseline: bool = False
    ref: Column | None = None

    @property
    def name(self) -> str:
        return self.adapter.name


@dataclass
class MetricCell:
    metric: Metric
    text: str
    ci: str
    delta: str = ""
    p_value: float | None = None
    significant: bool = False
    direction: str = ""  # "better" / "worse" / "" (no delta or no change)


@dataclass
class MetricRow:
    name: str
    cells: list[MetricCell | None]


@dataclass
class CaseCell:
    sample: Sample
    segments: list[Segment]
    truncated: int
    changed: bool  # verdict differs from the reference column
    differs: bool  # output differs from the reference column


@dataclass
class CaseRow:
    case: str
    prompt: str
    expected: Any
    cells: list[CaseCell | None]

    @property
    def disagree(self) -> bool:
        return any(c is not None and (c.changed or c.differs) for c in self.cells)


@dataclass
class BatteryView:
    name: str
    metrics: list[MetricRow]
    cases: list[CaseRow]
    n_disagree: int = 0
    plot: str | None = None


@dataclass
class GateRow:
    """One gate across the columns (None where it does not apply, e.g. the base column)."""

    expr: str
    cells: list[GateResult | None]


@dataclass
class GateSection:
    rows: list[GateRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ReportModel:
    columns: list[Column]
    batteries: list[BatteryView]
    finish_reasons: list[str]
    finish_counts: list[dict[str, int]]
    runs: list[dict[str, Any]]
    alpha: float
    gates: GateSection = field(default_factory=GateSection)
    plots: dict[str, str] = field(default_factory=dict)
    ten: BatteryView | None = None

    @property
    def reference(self) -> str:
        """Human words for what deltas are measured against."""
        if any(c.is_baseline for c in self.columns):
            return "the matching baseline column"
        ref = next((c.ref for c in self.columns if c.ref is not None), None)
        return f"column {ref.label}" if ref else "(a single column: no deltas)"


def make_columns(files: list[tuple[str, Results]], baseline: tuple[str, Results] | None) -> list[Column]:
    """One column per (file, adapter); a base column identical to an earlier one is dropped."""
    cols: list[Column] = []
    sources = ([(baseline[0], baseline[1], True)] if baseline else []) + [(f, r, False) for f, r in files]
    for file, results, is_base_file in sources:
        for info in results.adapters:
            if info.kind == "base" and any(_same_outputs(c, results, info) for c in cols):
                continue
            cols.append(Column("", file, results, info, is_baseline=is_base_file))
    names = [c.name for c in cols]
    for c in cols:
        c.label = c.name if names.count(c.name) == 1 else f"{c.file}:{c.name}"
        if c.is_baseline:
            c.label += " (baseline)"
    _assign_refs(cols, baseline)
    return cols


def _same_outputs(col: Column, results: Results, info: AdapterInfo) -> bool:
    if col.adapter.kind != "base" or col.adapter.base_model != info.base_model:
        return False

    def key(r: Results, name: str) -> list[tuple[str, str, str]]:
        return sorted((s.battery, s.case, s.output) for s in r.samples if s.adapter == name)

    return key(col.results, col.name) == key(results, info.name)


def _assign_refs(cols: list[Column], baseline: tuple[str, Results] | None) -> None:
    if not cols:
        return
    base_cols = [c for c in cols if c.is_baseline]
    for c in cols:
        if c.is_baseline:
            continue
        if baseline is None:
            # The first adapter column, so a base control listed first does not become the yardstick.
            first = next((x for x in cols if x.adapter.kind != "base"), cols[0])
            c.ref = first if c is not first else None
            continue
        try:
            name = pair_adapter(c.results, baseline[1], c.name)
            c.ref = next(b for b in base_cols if b.name == name)
        except EvalsuiteError:  # no unambiguous pairing: compare with the first baseline column
            c.ref = base_cols[0] if base_cols else None


def fmt_value(value: float, scale: float) -> str:
    return f"{value:.1f}" if scale >= 10 else f"{value:.3f}"


def metric_cell(col: Column, metric: Metric, alpha: float) -> MetricCell:
    ci = ""
    if metric.ci_low is not None and metric.ci_high is not None:
        ci = f"{fmt_value(metric.ci_low, metric.scale)}–{fmt_value(metric.ci_high, metric.scale)}"
    cell = MetricCell(metric, fmt_value(metric.value, metric.scale), ci)
    spec = spec_of(metric)
    if col.ref is None or spec is None:
        return cell
    cmp = compare_paired(spec, col.ref.results.samples_for(metric.battery, col.ref.name),
                         col.results.samples_for(metric.battery, col.name))
    if cmp is None:
        return cell
    delta = cmp.value - cmp.ref_value
    cell.delta = f"{delta:+.1f}" if metric.scale >= 10 else f"{delta:+.3f}"
    cell.p_value = cmp.p_value
    cell.significant = cmp.p_value < alpha
    if delta != 0:
        cell.direction = "better" if (delta > 0) == spec.higher_is_better else "worse"
    return cell


def case_rows(battery: str, cols: list[Column]) -> list[CaseRow]:
    by_col = [{s.case: s for s in c.results.samples_for(battery, c.name)} for c in cols]
    cases = list(dict.fromkeys(case for samples in by_col for case in samples))
    index = {id(c): i for i, c in enumerate(cols)}
    rows = []
    for case in cases:
        first = next(samples[case] for samples in by_col if case in samples)
        cells: list[CaseCell | None] = []
        for col, samples in zip(cols, by_col, strict=True):
            sample = samples.get(case)
            if sample is None:
                cells.append(None)
                continue
            ref = by_col[index[id(col.ref)]].get(case) if col.ref is not None else None
            cells.append(_case_cell(sample, ref))
        rows.append(CaseRow(case, first.prompt, first.expected, cells))
    return rows


def _case_cell(sample: Sample, ref: Sample | None) -> CaseCell:
    text = sample.output[:MAX_OUTPUT_CHARS]
    truncated = len(sample.output) - len(text)
    if ref is None or ref.output == sample.output:
        segments = [Segment(text, False)] if text else []
    else:
        segments = diff_segments(ref.output[:MAX_OUTPUT_CHARS], text)
    changed = ref is not None and ref.passed != sample.passed
    return CaseCell(sample, segments, truncated, changed, ref is not None and ref.output != sample.output)


def battery_view(battery: str, cols: list[Column], alpha: float) -> BatteryView:
    names = list(dict.fromkeys(m.name for c in cols for m in c.results.metrics
                               if m.battery == battery and m.adapter == c.name))
    rows = []
    for name in names:
        cells: list[MetricCell | None] = []
        for col in cols:
            metric = col.results.metric(battery, col.name, name)
            cells.append(metric_cell(col, metric, alpha) if metric else None)
        rows.append(MetricRow(name, cells))
    cases = case_rows(battery, cols)
    return BatteryView(battery, rows, cases, sum(r.disagree for r in cases))


def finish_counts(cols: list[Column]) -> tuple[list[str], list[dict[str, int]]]:
    from evalsuite.results.schema import FINISH_REASONS

    counts = []
    for col in cols:
        mine = [s.finish_reason for s in col.results.samples if s.adapter == col.name]
        counts.append({r: mine.count(r) for r in FINISH_REASONS})
    return list(FINISH_REASONS), counts
