"""``evalsuite gate`` and ``evalsuite baseline record``: argument parsing and handlers.

``cli.py`` only registers these; exit codes: 0 every gate passed, 1 a gate failed, 2 bad input
(raised as ``EvalsuiteError`` and turned into exit 2 by the CLI's main) or gated samples that were not run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from evalsuite.errors import EvalsuiteError

GATE_EPILOG = """\
gate expressions:
  squad.exact_match >= 60        absolute threshold (>=, >, <=, <, ==)
  runaway-turns.rate <= 0.02
  uppercase-echo.accuracy: -2%   regression vs --baseline, relative to the baseline value
  squad.f1: -1.5                 regression vs --baseline, in metric units
A regression gate fails only when the worsening is beyond the tolerance AND significant at --alpha
(exact McNemar on pass/fail flips; paired bootstrap for continuous scores).
Declared gates come from [tool.evalsuite] gates in pyproject.toml or a top-level `gates:` key in
--config YAML; --gate replaces declared gates on the same metric and family, and adds the rest.
In CI: --format github adds an ::error annotation per failed gate (on the line that declares it), and
a Markdown summary is appended to $GITHUB_STEP_SUMMARY when it is set (or to --summary FILE).
exit status: 0 all gates pass, 1 a gate failed, 2 bad input or a results file with samples that were
not run (the stall guard stopped a stuck engine: the gates saw only part of the cases).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Called by ``evalsuite.cli``: adds ``gate`` and ``baseline``."""
    add_gate_parser(subparsers)
    add_baseline_parser(subparsers)


def add_gate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("gate", help="apply quality gates to a results file (exit 0/1/2)",
                              epilog=GATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, help="results.json written by `evalsuite probe` or the plugin")
    p.add_argument("--baseline", type=Path, help="baseline.json for regression gates")
    p.add_argument("--gate", action="append", default=[], metavar="EXPR", help="gate expression (repeatable)")
    p.add_argument("--alpha", type=float, help="significance level for regression gates (default 0.05)")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME",
                   help="gate only this adapter (repeatable; default: every non-base adapter)")
    p.add_argument("--config", type=Path, help="read declared gates from this config YAML (or .toml)")
    p.add_argument("--max-flips", type=int, default=20, help="flipped cases listed per gate and direction")
    p.add_argument("--accept-partial", action="store_true",
                   help="gate a results file marked partial (pytest -k/--lf ran only some cases) as it is")
    p.add_argument("--format", choices=("text", "github"), default="text",
                   help="github: also print a workflow-command annotation per failed gate")
    p.add_argument("--summary", type=Path, metavar="FILE",
                   help="append a Markdown summary here (default: $GITHUB_STEP_SUMMARY when set)")
    p.set_defaults(func=run_gate)
    return p


def add_baseline_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("baseline", help="record a results file as the regression baseline")
    sub = p.add_subparsers(dest="baseline_command", metavar="record", required=True)
    rec = sub.add_parser("record", help="write results.json as a baseline (refuses a dirty git tree)")
    rec.add_argument("results", type=Path)
    rec.add_argument("-o", "--output", type=Path,
                     help="where to write (default: tool.evalsuite.baseline in pyproject.toml, "
                     "else baseline.json)")
    rec.add_argument("--force", action="store_true", help="record even with uncommitted changes")
    rec.set_defaults(func=run_baseline_record)
    return p


def run_gate(args: argparse.Namespace) -> int:
    try:
        return _gate(args)
    except EvalsuiteError as e:
        if args.format == "github":  # shown on the run's page too; exit 2 as always
            from evalsuite.github import error_annotation

            print(error_annotation(e, "evalsuite gate: bad input", args.config))
        raise


def _gate(args: argparse.Namespace) -> int:
    from evalsuite.gates.baseline import describe_baseline
    from evalsuite.gates.ci import gate_annotations, markdown_summary
    from evalsuite.gates.declared import resolve_gates
    from evalsuite.gates.evaluate import evaluate_gates
    from evalsuite.github import append_summary, check_summary_path, summary_path
    from evalsuite.results.io import load_results

    resolved = resolve_gates(args.gate, args.config, args.baseline, args.alpha)
    if not resolved.gates:
        where = args.config or "pyproject.toml [tool.evalsuite] gates"
        raise EvalsuiteError(f"no gates to apply: declare them in {where} or pass --gate EXPR")
    results = load_results(args.results)
    baseline_path = resolved.baseline_path
    baseline = load_results(baseline_path) if baseline_path is not None else None
    summary = summary_path(args.summary)
    protected = [args.results, *(p for p in (baseline_path, args.config) if p is not None)]
    if summary is not None:
        check_summary_path(summary, protected)
    report = evaluate_gates(results, baseline, resolved.gates, resolved.alpha, adapters=args.adapter or None,
                            accept_partial=args.accept_partial)
    described = None
    if baseline_path is not None and baseline is not None and baseline.baseline:
        described = describe_baseline(baseline_path)
        print(described)
    for line in report.lines(max_flips=args.max_flips):
        print(line)
    if args.format == "github":
        for line in gate_annotations(report, resolved.locations):
            print(line)
    if summary is not None:
        append_summary(summary, markdown_summary(report, args.results, described), protected)
    if report.incomplete:
        return 2  # some gated sample was not run: no verdict is final, whatever the gates say
    return 0 if report.passed else 1


def run_baseline_record(args: argparse.Namespace) -> int:
    from evalsuite.files import check_output_path
    from evalsuite.gates.baseline import describe_baseline, record_baseline
    from evalsuite.gates.declared import declared_gates

    out = args.output or declared_gates().baseline or Path("baseline.json")
    check_output_path(out, "baseline file", inputs=[args.results], kind="results")
    record_baseline(args.results, out, force=args.force)
    print(f"recorded {describe_baseline(out)}")
    return 0
