"""Assemble the report model from results files: columns, summary, battery sections, gates and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.gates.evaluate import GateResult, evaluate_gates
from evalsuite.gates.expr import Gate
from evalsuite.report import plots
from evalsuite.report.columns import Column, make_layout
from evalsuite.report.compare import sort_summary
from evalsuite.report.model import (
    TEN_BATTERY,
    BatteryView,
    GateRow,
    GateSection,
    ReportModel,
    baseline_record,
    battery_view,
    not_run_lines,
)
from evalsuite.report.runs import run_rows
from evalsuite.results.io import load_results
from evalsuite.results.schema import FINISH_REASONS, Results


def _labels(files: list[Path]) -> list[str]:
    """Short names for the files: the stem, or the path when stems collide."""
    stems = [p.stem for p in files]
    return [p.stem if stems.count(p.stem) == 1 else str(p) for p in files]


def gate_section(cols: list[Column], files: list[tuple[str, Results]], baseline: Results | None,
                 gates: list[Gate], alpha: float) -> GateSection:
    section = GateSection()
    if not gates:
        return section
    usable = gates if baseline is not None else [g for g in gates if not g.needs_baseline]
    if len(usable) < len(gates):
        section.notes.append("regression gates need --baseline; shown: absolute thresholds only")
    verdicts: dict[tuple[str, str, str], GateResult] = {}
    for file, results in files:
        report = evaluate_gates(results, baseline, usable, alpha, skip_missing=True)
        for r in report.results:
            verdicts[(file, r.adapter, r.gate.expr)] = r
    for gate in usable:
        cells = [None if c.is_baseline else verdicts.get((c.file, c.name, gate.expr)) for c in cols]
        section.rows.append(GateRow(gate.describe(), cells))
    return section


def _distinct(paths: list[Path]) -> None:
    """The same results file twice would show one run as two columns that agree with each other perfectly."""
    from evalsuite.files import sha256_file

    seen: dict[object, Path] = {}
    for p in paths:
        try:
            keys: list[object] = [p.resolve(), ("sha256", sha256_file(p))] if p.is_file() else [p.resolve()]
        except (OSError, RuntimeError):
            continue  # unreadable, a symlink loop: load_results names the problem
        for key in keys:
            if key in seen:
                same = "is" if key == p.resolve() else "has the same content as"
                raise EvalsuiteError(f"{p}: {same} {seen[key]}, given before; a report compares different runs "
                                     "(give each results file once)")
            seen[key] = p


def build_model(paths: list[Path], baseline_path: Path | None = None, gates: list[Gate] | None = None,
                alpha: float = 0.05, with_plots: bool = True) -> ReportModel:
    """Load the files and compute everything the templates show."""
    _distinct(paths)
    loaded = [load_results(p) for p in paths]
    labels = _labels(paths + ([baseline_path] if baseline_path else []))
    files = list(zip(labels, loaded, strict=False))
    baseline = load_results(baseline_path) if baseline_path else None
    base = (labels[-1], baseline) if baseline is not None else None
    layout = make_layout(files, base)
    cols = layout.columns
    names = list(dict.fromkeys(b for c in cols for b in c.results.batteries()))
    views = [battery_view(b, cols, alpha) for b in names]
    model = ReportModel(columns=cols, groups=layout.groups, batteries=[v for v in views if v.name != TEN_BATTERY],
                        budgets=[v.budget for v in views], finish_reasons=list(FINISH_REASONS),
                        runs=run_rows(cols), alpha=alpha, notes=layout.notes, banners=layout.banners,
                        summary=sort_summary([r for v in views for r in v.summary]),
                        ten=next((v for v in views if v.name == TEN_BATTERY), None), not_run=not_run_lines(cols))
    if baseline_path is not None and baseline is not None:
        model.baseline = baseline_record(baseline_path.name, baseline.baseline)
    model.gates = gate_section(cols, files, baseline, gates or [], alpha)
    if with_plots:
        model.plots = _plots(model)
        for view in views:
            view.plot = _delta_plot(view)
    return model


def _overview(cols: list[Column], views: list[BatteryView], scaled: bool) -> str | None:
    """Accuracy per battery (0-1), or the 0-100 metrics (SQuAD EM/F1); None when there is nothing to see."""
    groups = [(v.name, row.name) for v in views for row in v.metrics
              if any(c is not None and ((c.metric.scale >= 10) if scaled else row.name == "accuracy")
                     for c in row.cells)]
    values = [[m.value if (m := col.results.metric(b, col.name, n)) else None for b, n in groups] for col in cols]
    if not any(v for vals in values for v in vals):  # all missing or all zero: the tables say it all
        return None
    errors = [[(m.ci_low, m.ci_high) if (m := col.results.metric(b, col.name, n)) is not None
               and m.ci_low is not None and m.ci_high is not None else None for b, n in groups] for col in cols]
    names = [f"{b}.{n}" if scaled else b for b, n in groups]
    title = "Scores (0-100) with 95% CIs" if scaled else "Accuracy per battery with 95% CIs"
    return plots.grouped_bars(title, names, [c.label for c in cols], values, errors,
                              "score" if scaled else "pass rate", 100.0 if scaled else 1.0)


def _delta_plot(view: BatteryView) -> str | None:
    """The battery's deltas with their CIs; None when there are none or all are exactly 0 (the table says so)."""
    if not any(r.delta.value or r.delta.low or r.delta.high for r in view.summary):
        return None
    several = len({r.candidate.label for r in view.summary}) > 1
    rows = [(f"{r.metric} · {r.candidate.label}" if several else r.metric, *(100 / r.delta.scale * x for x in
             (r.delta.value, r.delta.low, r.delta.high)), r.delta.verdict) for r in view.summary]
    return plots.delta_plot(f"{view.name}: candidate − control", rows)  # type: ignore[arg-type]


def _plots(model: ReportModel) -> dict[str, str]:
    out: dict[str, Any] = {
        "accuracy": _overview(model.columns, model.all_batteries, scaled=False),
        "scaled": _overview(model.columns, model.all_batteries, scaled=True),
        "loss": plots.loss_curves([(r["label"], r["base_model"], r["curve"]) for r in model.runs]),
    }
    return {k: v for k, v in out.items() if v}
