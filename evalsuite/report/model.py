"""The report's view model: plain data the HTML and Markdown templates render.

Columns (:mod:`evalsuite.report.columns`) are (results file, adapter) pairs grouped by base model; every delta is
*candidate - control* within one base (:mod:`evalsuite.report.compare`). The summary rows come first; then one
section per battery, drawn as the list of parts in :attr:`BatteryView.parts` (each part is a template macro of
the same name, so a new kind of evidence, e.g. judge verdicts, is one more part and one more macro).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evalsuite.gates.evaluate import GateResult
from evalsuite.report.budgets import BudgetRow, budget_cell
from evalsuite.report.cases import PASS_TO_FAIL, CaseCell, CaseRow, case_rows
from evalsuite.report.columns import Column, Group
from evalsuite.report.compare import MetricCell, MetricRow, SummaryRow, metric_cell, summary_rows
from evalsuite.report.judged import JudgeView, judge_views

TEN_BATTERY = "llama32-ten"
BATTERY_PARTS = ("metrics", "deltas", "budget", "judge", "cases")
TEN_PARTS = ("metrics", "deltas", "budget", "judge")  # its cases are the reading table of their own section


@dataclass
class BatteryView:
    name: str
    metrics: list[MetricRow]
    cases: list[CaseRow]
    budget: BudgetRow
    summary: list[SummaryRow]
    parts: list[str] = field(default_factory=lambda: list(BATTERY_PARTS))
    plot: str | None = None  # the delta-with-CI plot
    judged: list[JudgeView] = field(default_factory=list)  # evalsuite judge's pairwise verdicts

    @property
    def n_flips(self) -> int:
        return sum(r.flipped for r in self.cases)

    @property
    def n_failed(self) -> int:
        return sum(r.failed for r in self.cases)

    @property
    def n_not_run(self) -> int:
        return sum(r.not_run for r in self.cases)

    def flipped(self, cols: list[Column]) -> list[tuple[CaseRow, Column, CaseCell]]:
        """Every (case, column) whose verdict differs from its control's, regressions first."""
        flips = [(row, col, cell) for row in self.cases for col, cell in zip(cols, row.cells, strict=True)
                 if cell is not None and cell.flip]
        return sorted(flips, key=lambda f: f[2].flip != PASS_TO_FAIL)


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
class BaselineRecord:
    """Where the ``--baseline`` file came from (its ``baseline`` block), for the reader to check."""

    file: str
    recorded: str | None
    source: str | None
    source_sha256: str | None
    commit: str | None
    dirty: bool
    forced: bool
    manifest_digests: dict[str, Any]

    @property
    def line(self) -> str:
        if self.recorded is None and self.source is None:
            return f"{self.file} is a plain results file (not recorded with `evalsuite baseline record`)"
        commit = (self.commit or "no git")[:12] + (" (dirty tree, forced)" if self.dirty or self.forced else "")
        sha = (self.source_sha256 or "")[:12]
        return f"{self.file}, recorded {self.recorded} from {self.source} (sha256 {sha}…) at commit {commit}"


@dataclass
class ReportModel:
    columns: list[Column]
    groups: list[Group]
    batteries: list[BatteryView]
    budgets: list[BudgetRow]
    finish_reasons: list[str]
    runs: list[dict[str, Any]]
    alpha: float
    summary: list[SummaryRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    banners: list[str] = field(default_factory=list)
    baseline: BaselineRecord | None = None
    gates: GateSection = field(default_factory=GateSection)
    plots: dict[str, str] = field(default_factory=dict)
    ten: BatteryView | None = None
    not_run: list[str] = field(default_factory=list)  # per column and reason: samples with no verdict

    @property
    def has_deltas(self) -> bool:
        return any(c.ref is not None for c in self.columns)

    @property
    def all_batteries(self) -> list[BatteryView]:
        return self.batteries + ([self.ten] if self.ten else [])


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
    view = BatteryView(battery, rows, case_rows(battery, cols),
                       BudgetRow(battery, [budget_cell(c, battery) for c in cols]),
                       summary_rows(battery, cols, rows), judged=judge_views(battery, cols))
    if battery == TEN_BATTERY:
        view.parts = list(TEN_PARTS)
    return view


def not_run_lines(cols: list[Column]) -> list[str]:
    """``column: n sample(s) not run (battery k, ...): why`` per column and reason; they have no verdict and count in
    no metric, so they are listed apart from the failures."""
    lines = []
    for col in cols:
        mine = [s for s in col.results.samples if s.adapter == col.name and not s.ran]
        for why in dict.fromkeys(s.not_run_reason for s in mine):
            same = [s for s in mine if s.not_run_reason == why]
            per = ", ".join(f"{b} {n}" for b, n in _counts(s.battery for s in same).items())
            lines.append(f"{col.label}: {len(same)} sample(s) not run ({per}): {why}")
    return lines


def _counts(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def baseline_record(file: str, block: dict[str, Any] | None) -> BaselineRecord:
    b = block or {}
    git = b.get("git") if isinstance(b.get("git"), dict) else {}
    digests = b.get("manifest_digests")
    return BaselineRecord(file, b.get("recorded"), b.get("source"), b.get("source_sha256"),
                          (git or {}).get("commit"), bool((git or {}).get("dirty")), bool(b.get("forced")),
                          digests if isinstance(digests, dict) else {})
