"""Assemble the report model from results files: tables, gate verdicts and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.gates.evaluate import GateResult, evaluate_gates
from evalsuite.gates.expr import Gate
from evalsuite.report import plots
from evalsuite.report.model import (
    TEN_BATTERY,
    BatteryView,
    Column,
    GateRow,
    GateSection,
    ReportModel,
    battery_view,
    finish_counts,
    make_columns,
)
from evalsuite.report.runs import run_rows
from evalsuite.results.io import load_results
from evalsuite.results.schema import Results


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
        cells = [verdicts.get((c.file, c.name, gate.expr)) for c in cols]
        section.rows.append(GateRow(gate.describe(), cells))
    return section


def _metric_plot(cols: list[Column], views: list[BatteryView], scaled: bool) -> str | None:
    """Accuracy per battery (0-1), or the metrics on a 0-100 scale (SQuAD EM/F1)."""
    groups: list[tuple[str, str]] = []
    for view in views:
        for row in view.metrics:
            cell = next((c for c in row.cells if c is not None), None)
            if cell is None:
                continue
            if (scaled and cell.metric.scale >= 10) or (not scaled and row.name == "accuracy"):
                groups.append((view.name, row.name))
    if not groups:
        return None
    values: list[list[float | None]] = []
    errors: list[list[tuple[float, float] | None]] = []
    for col in cols:
        vals: list[float | None] = []
        errs: list[tuple[float, float] | None] = []
        for battery, name in groups:
            m = col.results.metric(battery, col.name, name)
            vals.append(m.value if m else None)
            ci = (m.ci_low, m.ci_high) if m is not None else (None, None)
            errs.append((ci[0], ci[1]) if ci[0] is not None and ci[1] is not None else None)
        values.append(vals)
        errors.append(errs)
    names = [f"{b}.{n}" if scaled else b for b, n in groups]
    title = "Scores (0-100) with 95% CIs" if scaled else "Accuracy per battery with 95% CIs"
    return plots.grouped_bars(title, names, [c.label for c in cols], values, errors,
                              "score" if scaled else "pass rate")


def build_model(paths: list[Path], baseline_path: Path | None = None, gates: list[Gate] | None = None,
                alpha: float = 0.05, with_plots: bool = True) -> ReportModel:
    """Load the files and compute everything the templates show."""
    loaded = [load_results(p) for p in paths]
    files = list(zip(_labels(paths), loaded, strict=True))
    baseline = load_results(baseline_path) if baseline_path else None
    base_label = ("baseline" if baseline_path and baseline_path.stem in [f for f, _ in files]
                  else baseline_path.stem if baseline_path else "")
    cols = make_columns(files, (base_label, baseline) if baseline else None)
    names = list(dict.fromkeys(b for c in cols for b in c.results.batteries()))
    views = [battery_view(b, cols, alpha) for b in names]
    reasons, counts = finish_counts(cols)
    model = ReportModel(columns=cols, batteries=[v for v in views if v.name != TEN_BATTERY],
                        finish_reasons=reasons, finish_counts=counts, runs=run_rows(cols), alpha=alpha,
                        ten=next((v for v in views if v.name == TEN_BATTERY), None))
    model.gates = gate_section(cols, files, baseline, gates or [], alpha)
    if with_plots:
        model.plots = _plots(model, views)
    return model


def _plots(model: ReportModel, views: list[BatteryView]) -> dict[str, str]:
    out: dict[str, Any] = {
        "accuracy": _metric_plot(model.columns, views, scaled=False),
        "scaled": _metric_plot(model.columns, views, scaled=True),
        "loss": plots.loss_curves([(r["label"], r["curve"]) for r in model.runs]),
        "finish": plots.stacked_bars("Finish reasons", [c.label for c in model.columns],
                                     model.finish_reasons, model.finish_counts) if model.columns else None,
    }
    # every key stays ("" when there is no plot): the template reads each one under StrictUndefined
    return {k: v or "" for k, v in out.items()}
