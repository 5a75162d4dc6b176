"""``evalsuite drift SOURCE MODEL.gguf``: exit 0 no error finding and every gate passed, 1 drift, 2 bad input.

The report has two parts: the template, the stops and the tokens, which a conversion can break and which must be
clean, and the weights: how far the GGUF's greedy outputs move from the source's, a number that is expected to be
below 100% identical for a quantized file (a warning, gated with ``--gate``) and an error only for a file that holds
the source's own weights."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError

EPILOG = """\
rules (stable ids; see README "Probe what you deploy"):
  gguf-eos-mismatch  gguf-template-missing  gguf-template-differs  gguf-double-bos
  gguf-tokenization-differs  gguf-vocab-mismatch  gguf-output-flips
gates: drift.METRIC OP NUMBER, METRIC one of flips, pass_to_fail, fail_to_pass, agreement, differing, mcnemar_p,
cases (e.g. --gate 'drift.flips <= 2' --gate 'drift.agreement >= 0.95').
template, stops and tokens must be clean (error findings). Output flips are about the weights: an error when the
GGUF holds the source's own weights (f32 from f32), a warning when it is quantized or in another precision, where
outputs are expected to move; gate how far with drift.agreement / drift.flips.
exit status: 0 clean, 1 an error finding or a failed gate, 2 bad input.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("drift", help="check a GGUF against the run dir it came from (template, stops, tokens, outputs)",
                       description="Static checks (what llama.cpp stops on, the embedded template, BOS, tokenization, "
                                   "vocabulary and config) on the batteries' conversations, then the same batteries "
                                   "on the HF source and the GGUF, paired (flips, exact McNemar).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=Path, metavar="SOURCE",
                   help="run dir, PEFT adapter folder or HF model folder the GGUF came from")
    p.add_argument("gguf", type=Path, metavar="MODEL.gguf")
    p.add_argument("--battery", action="append", default=[], metavar="NAME",
                   help="battery name or .yaml path (repeatable; default: every built-in battery)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--static-only", action="store_true", help="skip generating (no HF model, no GGUF weights)")
    p.add_argument("--gate", action="append", default=[], metavar="EXPR", help="drift gate, e.g. 'drift.flips <= 2'")
    p.add_argument("--alpha", type=float, default=0.05, help="McNemar level for gguf-output-flips (default 0.05)")
    p.add_argument("--out", type=Path, help="also write the paired probe results here (a results.json)")
    p.add_argument("--max-new-tokens", type=int, help="override every battery's max_new_tokens")
    p.add_argument("--device", help="HF side: cpu, cuda ... (default: cuda when available)")
    p.add_argument("--no-cache", action="store_true", help="regenerate even when cached generations exist")
    p.set_defaults(func=run_drift)


def run_drift(args: argparse.Namespace) -> int:
    from evalsuite.drift.dynamic import parse_drift_gates
    from evalsuite.drift.run import DriftReport, check_static, compare_weights

    if not 0.0 < args.alpha < 1.0:
        raise EvalsuiteError(f"--alpha: expected a level between 0 and 1, got {args.alpha}")
    gates = parse_drift_gates(args.gate)
    if gates and args.static_only:
        raise EvalsuiteError("--gate: drift gates read the paired generations, which --static-only skips")
    report = DriftReport(args.source, args.gguf, check_static(args.source, args.gguf, args.battery),
                         weights=compare_weights(args.source, args.gguf))
    if not args.static_only:
        _dynamic(args, report, gates)
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        for line in report.lines():
            print(line)
    return report.exit_code


def _dynamic(args: argparse.Namespace, report: Any, gates: list[Any]) -> None:
    from evalsuite.drift.dynamic import apply_gates, compare_columns, flip_finding
    from evalsuite.drift.run import run_paired

    results = run_paired(args.source, args.gguf, args.battery, max_new_tokens=args.max_new_tokens,
                         device=args.device, use_cache=not args.no_cache, out=args.out)
    source, gguf = (a.name for a in results.adapters)
    summary = compare_columns(results, source, gguf)
    report.dynamic = summary
    finding = flip_finding(summary, args.alpha, report.weights)
    if finding is not None:
        report.findings.append(finding)
    report.gates, report.gates_passed = apply_gates(gates, summary)
