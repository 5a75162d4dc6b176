"""Gate results for CI: GitHub annotations (a failed gate is an ``::error`` titled with the gate, on the line that
declares it when known) and the Markdown job summary."""

from __future__ import annotations

from pathlib import Path

from evalsuite.gates.evaluate import GateReport, GateResult
from evalsuite.github import annotation, md_escape, relative_path

Location = tuple[Path, int | None]
MAX_FLIPS_IN_MESSAGE = 5


def _target(r: GateResult) -> str:
    return r.adapter + (f" vs baseline {r.baseline_adapter}" if r.baseline_adapter is not None else "")


def _flip_lines(r: GateResult, limit: int) -> list[str]:
    lost = [f for f in r.flips if f.direction == "pass->fail"]
    lines = [f"pass->fail {f.battery}[{f.case}]: {f.prompt!r}" for f in lost[:limit]]
    if len(lost) > limit:
        lines.append(f"... and {len(lost) - limit} more pass->fail")
    return lines


def gate_annotations(report: GateReport, locations: dict[str, Location]) -> list[str]:
    """One ``::error`` per failed (gate, adapter) and per reason samples were not run; passing and skipped gates
    give none."""
    out = []
    for r in report.results:
        if r.passed or r.skipped:
            continue
        where = locations.get(r.gate.expr)
        message = "\n".join([f"{_target(r)}: {r.reason}", *_flip_lines(r, MAX_FLIPS_IN_MESSAGE)])
        out.append(annotation("error", message, title=r.gate.expr,
                              file=relative_path(where[0]) if where else None, line=where[1] if where else None))
    out += [annotation("error", line, title="evalsuite: samples not run") for line in report.not_run]
    return out


def markdown_summary(report: GateReport, results: Path, baseline: str | None = None) -> str:
    """A heading with the verdict, one table row per (gate, adapter), the lost cases of failed gates."""
    failed = [r for r in report.results if not r.passed and not r.skipped]
    verdict = f"{len(failed)} of {len(report.results)} failed" if failed else f"all {len(report.results)} passed"
    if report.incomplete:
        verdict += ", incomplete: some samples were not run"
    mark = "❌" if failed else "⚠️" if report.incomplete else "✅"
    lines = [f"### {mark} evalsuite gates: {verdict}", "", *[f"- {md_escape(line)}" for line in report.not_run],
             *([""] if report.not_run else []),
             f"Results: {md_escape(relative_path(results))}" + (f"; {md_escape(baseline)}" if baseline else ""),
             "", "| verdict | gate | adapter | result |", "|---|---|---|---|"]
    lines += [f"| {r.verdict} | {md_escape(r.gate.describe())} | {md_escape(_target(r))} | {md_escape(r.reason)} |"
              for r in report.results]
    for r in failed:
        flips = _flip_lines(r, 20)
        if flips:
            lines += ["", f"<details><summary>{md_escape(r.gate.describe())} [{md_escape(r.adapter)}]: cases that "
                          "went from pass to fail</summary>", "", *[f"- {md_escape(f)}" for f in flips], "",
                      "</details>"]
    return "\n".join(lines) + "\n"
