"""``evalsuite drift SOURCE MODEL.gguf`` and ``evalsuite drift SOURCE --endpoint URL``: exit 0 no error finding and
every gate passed, 1 drift, 2 bad input."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError

EPILOG = """\
rules (stable ids; see README "Probe what you deploy" and "Probe the endpoint you serve"):
  gguf-eos-mismatch  gguf-template-missing  gguf-template-differs  gguf-double-bos
  gguf-tokenization-differs  gguf-vocab-mismatch  gguf-output-flips
  endpoint-template-differs  endpoint-no-stop  endpoint-output-flips   (with --endpoint URL)
gates: drift.METRIC OP NUMBER, METRIC one of flips, pass_to_fail, fail_to_pass, agreement, differing, mcnemar_p,
cases (e.g. --gate 'drift.flips <= 2' --gate 'drift.agreement >= 0.95').
exit status: 0 clean, 1 an error finding or a failed gate, 2 bad input.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("drift", help="check a GGUF or a served endpoint against the run dir it came from (template, "
                                     "stops, tokens, outputs)",
                       description="Static checks (what llama.cpp stops on, the embedded template, BOS, tokenization, "
                                   "vocabulary and config) on the batteries' conversations, then the same batteries "
                                   "on the HF source and the GGUF, paired (flips, exact McNemar).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=Path, metavar="SOURCE", help="run dir (or PEFT adapter folder) the GGUF came from")
    p.add_argument("gguf", type=Path, nargs="?", metavar="MODEL.gguf", help="the GGUF exported from SOURCE (or "
                   "--endpoint URL instead)")
    p.add_argument("--endpoint", metavar="URL", help="check an OpenAI-compatible server instead of a GGUF "
                   "(http://HOST:PORT/v1): the same batteries through SOURCE and the server, its template where it "
                   "shows it (llama-server's /apply-template) and where it stops")
    p.add_argument("--served-model", metavar="NAME", help="--endpoint: the model id to ask for (default: the only "
                   "one served)")
    p.add_argument("--api-key-env", default="EVALSUITE_API_KEY", metavar="NAME",
                   help="--endpoint: the environment variable holding the API key (default EVALSUITE_API_KEY)")
    p.add_argument("--endpoint-timeout", type=float, default=120.0, metavar="S",
                   help="--endpoint: seconds one request may take (default 120)")
    p.add_argument("--concurrency", type=int, default=4, metavar="N",
                   help="--endpoint: requests in flight at once (default 4)")
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
    from evalsuite.drift.run import DriftReport, check_static

    if not 0.0 < args.alpha < 1.0:
        raise EvalsuiteError(f"--alpha: expected a level between 0 and 1, got {args.alpha}")
    gates = parse_drift_gates(args.gate)
    if gates and args.static_only:
        raise EvalsuiteError("--gate: drift gates read the paired generations, which --static-only skips")
    if (args.gguf is None) == (args.endpoint is None):
        raise EvalsuiteError("drift: give the GGUF (MODEL.gguf) or the server (--endpoint URL) to check against "
                             "SOURCE, one of them")
    if args.out is not None and not args.static_only:
        from evalsuite.files import check_output_path

        check_output_path(args.out, "--out results file", inputs=[args.gguf] if args.gguf is not None else [],
                          protected_dirs=[args.source], kind="results")
    if args.endpoint is not None:
        report = _endpoint(args, gates)
    else:
        report = DriftReport(args.source, args.gguf, check_static(args.source, args.gguf, args.battery))
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
                         device=args.device, use_cache=not args.no_cache, out=args.out).results
    source, gguf = (a.name for a in results.adapters)
    summary = compare_columns(results, source, gguf)
    report.dynamic = summary
    finding = flip_finding(summary, args.alpha)
    if finding is not None:
        report.findings.append(finding)
    report.gates, report.gates_passed = apply_gates(gates, summary)


def _endpoint(args: argparse.Namespace, gates: list[Any]) -> Any:
    """``--endpoint URL``: the template where the server shows it, then (unless --static-only) the paired batteries,
    their flips and where the server does not stop."""
    from evalsuite.drift.dynamic import apply_gates, compare_columns, flip_finding
    from evalsuite.drift.endpoint import served_column, stop_finding, template_check
    from evalsuite.drift.run import DriftReport, conversations, load_batteries, run_paired
    from evalsuite.drift.static import open_source_side
    from evalsuite.probe.endpoint_client import EndpointClient, is_url
    from evalsuite.probe.options import ProbeOptions, validate

    endpoint = {"served_model": args.served_model, "api_key_env": args.api_key_env,
                "endpoint_timeout": args.endpoint_timeout, "concurrency": args.concurrency}
    validate(ProbeOptions(**endpoint))
    if not is_url(args.endpoint):
        raise EvalsuiteError(f"--endpoint: expected an http(s):// URL like http://127.0.0.1:8080/v1, got "
                             f"{args.endpoint!r}")
    client = EndpointClient(args.endpoint, timeout=args.endpoint_timeout, key_env=args.api_key_env)
    src = open_source_side(args.source)
    checked = template_check(client, src, conversations(load_batteries(args.battery, bool(args.battery))))
    report = DriftReport(args.source, None, checked.findings, endpoint=client.url,
                         notes=[checked.note] if checked.note else [])
    if args.static_only:
        return report
    run = run_paired(args.source, args.endpoint, args.battery, max_new_tokens=args.max_new_tokens,
                     device=args.device, use_cache=not args.no_cache, out=args.out, **endpoint)
    source, served = served_column(run.results)
    report.dynamic = summary = compare_columns(run.results, source, served, label="endpoint")
    codec = next(t.codec for t in run.plan.targets if t.name == source)
    report.findings += [f for f in (stop_finding(run.results, source, served, codec),
                                    flip_finding(summary, args.alpha)) if f is not None]
    report.gates, report.gates_passed = apply_gates(gates, summary)
    return report
