"""Dynamic drift: the same batteries on the HF source and on the GGUF, paired case by case.

The pairing, the flips and the test are the gates' own (:func:`evalsuite.gates.evaluate.paired_samples`,
:func:`flips_of`, exact McNemar from :mod:`evalsuite.results.stats`): a case flips when its verdict differs between
the two columns; ``agreement`` is the share of cases whose output text and finish reason are identical. Drift gates
use the gate language with the battery ``drift`` (``drift.flips <= 2``, ``drift.agreement >= 0.95``); they are
absolute thresholds on the metrics :data:`METRICS` lists.
"""

from __future__ import annotations

from typing import Any

from evalsuite.drift.findings import Finding
from evalsuite.drift.weights import WeightFacts
from evalsuite.errors import EvalsuiteError
from evalsuite.gates.evaluate import flips_of, paired_samples
from evalsuite.gates.expr import Threshold, parse_gates
from evalsuite.results.schema import Results
from evalsuite.results.stats import mcnemar_exact_p

METRICS = ("flips", "pass_to_fail", "fail_to_pass", "agreement", "differing", "mcnemar_p", "cases")
MAX_LISTED = 20


def compare_columns(results: Results, source: str, gguf: str, label: str = "gguf") -> dict[str, Any]:
    """Per battery and overall: paired cases, identical outputs (text and finish reason), flips (listed), McNemar p.
    ``label`` names the served side in the summary (``gguf`` or ``endpoint``)."""
    batteries: dict[str, Any] = {}
    total = {"cases": 0, "identical": 0, "pass_to_fail": 0, "fail_to_pass": 0}
    flipped: list[dict[str, str]] = []
    ended = {"source": 0, label: 0}  # cases that ended on an end-of-generation token, per column
    for battery in results.batteries():
        pairs = paired_samples(results.samples_for(battery, gguf), results.samples_for(battery, source))
        if not pairs:
            continue
        flips = flips_of(pairs)
        lost = sum(f.direction == "pass->fail" for f in flips)
        identical = sum(a.output == b.output and a.finish_reason == b.finish_reason for a, b in pairs)
        ended["source"] += sum(a.finish_reason == "eos" for a, _ in pairs)  # pairs are (source, gguf)
        ended[label] += sum(b.finish_reason == "eos" for _, b in pairs)
        batteries[battery] = {"cases": len(pairs), "agreement": identical / len(pairs), "pass_to_fail": lost,
                              "fail_to_pass": len(flips) - lost, "mcnemar_p": mcnemar_exact_p(lost, len(flips) - lost)}
        for key, value in (("cases", len(pairs)), ("identical", identical), ("pass_to_fail", lost),
                           ("fail_to_pass", len(flips) - lost)):
            total[key] += value
        flipped += [{"battery": f.battery, "case": f.case, "direction": f.direction, "prompt": f.prompt,
                     "source_output": f.baseline_output, f"{label}_output": f.output} for f in flips]
    if not total["cases"]:
        raise EvalsuiteError(f"drift: no battery case ran on both the source and the {label}")
    lost, won = total["pass_to_fail"], total["fail_to_pass"]
    return {"columns": {"source": source, label: gguf}, "cases": total["cases"],
            "agreement": total["identical"] / total["cases"], "differing": total["cases"] - total["identical"],
            "flips": lost + won, "pass_to_fail": lost, "fail_to_pass": won, "mcnemar_p": mcnemar_exact_p(lost, won),
            "ended_eos": ended, "batteries": batteries, "flipped": flipped}


def flip_finding(summary: dict[str, Any], alpha: float, weights: WeightFacts | None = None) -> Finding | None:
    """Flips are an error when the paired test calls them significant at ``alpha`` and the GGUF holds the source's
    own weights (nothing but a serving difference can explain them then), else a warning: from a quantized GGUF
    they are the measured cost of quantization, which the user gates (``drift.flips``, ``drift.agreement``)."""
    if not summary["flips"]:
        return None
    label = "endpoint" if "endpoint" in summary["columns"] else "gguf"
    what = {"gguf": "GGUF", "endpoint": "endpoint"}[label]
    p = summary["mcnemar_p"]
    moved = weights is not None and not weights.same
    severity = "error" if p < alpha and not moved else "warning"
    why = (f"expected from the weights ({weights.describe()}); gate it with drift.flips or drift.agreement"
           if moved and weights is not None else "the template, stops and tokens checks say why, if any")
    message = (f"{summary['flips']} of {summary['cases']} cases flip between the HF source and the {what} "
               f"({summary['pass_to_fail']} pass->fail, {summary['fail_to_pass']} fail->pass; exact McNemar "
               f"p={p:.3g} {'<' if p < alpha else '>='} {alpha:g}); {why}")
    examples = [f"{f['direction']} {f['battery']}[{f['case']}]: HF {f['source_output'][:60]!r} vs {what} "
                f"{f[f'{label}_output'][:60]!r}" for f in summary["flipped"][:MAX_LISTED]]
    return Finding(f"{label}-output-flips", message, severity, examples)


def parse_drift_gates(exprs: list[str]) -> list[Threshold]:
    gates = parse_gates(exprs, "--gate")
    out = []
    for g in gates:
        if not isinstance(g, Threshold) or g.battery != "drift" or g.metric not in METRICS:
            raise EvalsuiteError(f'--gate "{g.expr}": drift gates are thresholds on drift.METRIC, METRIC one of '
                                 f"{', '.join(METRICS)} (like \"drift.flips <= 2\")")
        out.append(g)
    return out


def apply_gates(gates: list[Threshold], summary: dict[str, Any]) -> tuple[list[str], bool]:
    lines, passed = [], True
    for g in gates:
        value = float(summary[g.metric])
        ok = g.holds(value)
        passed = passed and ok
        lines.append(f"{'PASS' if ok else 'FAIL'} {g.describe()}: {value:.4g}")
    return lines, passed
