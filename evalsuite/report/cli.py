"""``evalsuite report A.json B.json ... -o report.html [--markdown report.md] [--baseline B.json]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from evalsuite.errors import EvalsuiteError
from evalsuite.files import OutputKind, check_output_path, resolve_path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="side-by-side HTML/Markdown report of results files",
        description="Columns are (results file, adapter) pairs grouped by base model; deltas are candidate - "
                    "control within a base model (the base column, or the matching baseline column with "
                    "--baseline), with paired 95% CIs and p-values, summarised first.")
    p.add_argument("results", type=Path, nargs="+",
                   help="results.json files (each may hold several adapters)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="HTML report to write (default report.html)")
    p.add_argument("--markdown", type=Path, help="also write a Markdown variant (for PRs)")
    p.add_argument("--baseline", type=Path,
                   help="baseline.json: shown first, deltas and regression gates against it")
    p.add_argument("--gate", action="append", default=[], metavar="EXPR",
                   help="gate expression to show verdicts for (repeatable; adds to declared gates)")
    p.add_argument("--config", type=Path, help="read declared gates from this config YAML (or .toml)")
    p.add_argument("--alpha", type=float, help="significance level (default 0.05)")
    p.add_argument("--title", default="evalsuite report")
    p.add_argument("--summary", type=Path, metavar="FILE",
                   help="append the Markdown report here (default: $GITHUB_STEP_SUMMARY when set, as the job "
                        "summary)")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from evalsuite.gates.declared import resolve_gates
    from evalsuite.github import append_summary, check_summary_path, summary_path
    from evalsuite.report import build_report

    output = args.output if args.output is not None or args.markdown is not None else Path("report.html")
    inputs = [*args.results, *([args.baseline] if args.baseline else [])]
    if output is not None and args.markdown is not None and \
            resolve_path(output, "report file (-o)") == resolve_path(args.markdown, "--markdown file"):
        raise EvalsuiteError(f"{output}: given as both the HTML and the Markdown report")
    outputs: list[tuple[Path | None, str, OutputKind]] = [(output, "report file (-o)", "html"),
                                                          (args.markdown, "--markdown file", "markdown")]
    for out, what, kind in outputs:
        if out is not None:
            check_output_path(out, what, inputs=inputs, kind=kind)  # before any work: nothing is lost after it
    summary = summary_path(args.summary)
    protected = [*inputs, *(p for p in (output, args.markdown, args.config) if p is not None)]
    if summary is not None:
        check_summary_path(summary, protected)
    resolved = resolve_gates(args.gate, args.config, None, args.alpha)
    model = build_report(args.results, output, args.markdown, args.baseline, resolved.gates, resolved.alpha,
                         args.title)
    for path in (output, args.markdown):
        if path is not None:
            print(f"wrote {path}")
    if summary is not None:
        from evalsuite.report.render import render_markdown

        append_summary(summary, render_markdown(model, args.title), protected)
        print(f"appended the Markdown report to {summary}")
    return 0
