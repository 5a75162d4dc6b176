"""``evalsuite drift`` as a library: the static checks on the batteries' conversations, then (unless
``static_only``) the same batteries generated on the HF source and on the GGUF, paired (:mod:`evalsuite.drift.dynamic`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.drift.findings import SERVING, Finding
from evalsuite.drift.static import Messages, open_gguf_side, open_source_side, source_config, static_findings
from evalsuite.drift.weights import WeightFacts, weight_facts
from evalsuite.gguf.reader import read_gguf
from evalsuite.probe.batteries import Battery, load_battery, resolve_batteries
from evalsuite.probe.sources import BatteryUnavailable


def load_batteries(names: list[str], explicit: bool) -> list[Battery]:
    """The named batteries (all built-in ones when none); one whose data is absent is skipped unless named."""
    out = []
    for path in resolve_batteries(names):
        try:
            out.append(load_battery(path))
        except BatteryUnavailable as e:
            if explicit:
                raise
            warnings.warn(f"skipping battery {path.stem}: {e}", stacklevel=2)
    return out


def conversations(batteries: list[Battery]) -> list[Messages]:
    seen: dict[str, Messages] = {}
    for b in batteries:
        for c in b.cases:
            seen.setdefault(repr(c.messages), c.messages)
    return list(seen.values())


def check_static(source: Path, gguf: Path, battery_names: list[str], weights: bool = False) -> list[Finding]:
    """Open both sides (bad input: one error), load the GGUF in llama.cpp (its vocabulary; with ``weights`` the whole
    model, which proves llama.cpp accepts the tensors), and run the static checks."""
    from evalsuite.gguf.llama import LlamaCpp

    src = open_source_side(source)
    file = read_gguf(gguf)
    batteries = load_batteries(battery_names, explicit=bool(battery_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        llama = LlamaCpp(gguf, vocab_only=not weights)
    try:
        return static_findings(src, open_gguf_side(file, llama), conversations(batteries))
    finally:
        llama.close()


def compare_weights(source: Path, gguf: Path) -> WeightFacts:
    """The GGUF's matrix types against the source's dtype (its base model's config.json for a run dir)."""
    return weight_facts(read_gguf(gguf), source_config(source))


@dataclass
class DriftReport:
    source: Path
    gguf: Path | None  # None: an endpoint is checked instead
    findings: list[Finding]
    dynamic: dict[str, Any] | None = None
    gates: list[str] = field(default_factory=list)
    gates_passed: bool = True
    endpoint: str | None = None  # the served endpoint's URL (``--endpoint``)
    notes: list[str] = field(default_factory=list)  # checks that were not possible, and why
    weights: WeightFacts | None = None

    @property
    def exit_code(self) -> int:
        return 1 if any(f.severity == "error" for f in self.findings) or not self.gates_passed else 0

    def serving(self) -> dict[str, list[str]]:
        """Template, stops and tokens: the rule ids found about each (empty: clean)."""
        return {s: [f.rule for f in self.findings if f.subject == s] for s in SERVING}

    def to_json(self) -> dict[str, Any]:
        served = {"endpoint": self.endpoint} if self.endpoint else {"gguf": str(self.gguf)}
        return {"schema_version": 1, "source": str(self.source), **served,
                "findings": [f.to_json() for f in self.findings], "serving": self.serving(),
                "weights": self.weights.to_json() if self.weights else None, "dynamic": self.dynamic,
                "gates": self.gates, "notes": self.notes, "exit_code": self.exit_code}

    def lines(self) -> list[str]:
        out = ["template, stops and tokens (what a conversion breaks; must be clean):"]
        for subject, rules in self.serving().items():
            out.append(f"  {subject:<9} {'clean' if not rules else ', '.join(rules)}")
        out += [line for f in self.findings if f.subject in SERVING for line in f.lines()]
        out += [f"note: {n}" for n in self.notes]
        if self.weights is not None or self.dynamic is not None:
            out.append(f"weights ({self.weights.describe() if self.weights else 'not compared'}):")
        if self.dynamic is not None:
            out += [f"  {line}" for line in _dynamic_lines(self.dynamic)]
        out += [line for f in self.findings if f.subject not in SERVING for line in f.lines()]
        errors = sum(f.severity == "error" for f in self.findings)
        out.append(f"drift: {errors} error(s), {len(self.findings) - errors} warning(s)" if self.findings
                   else "drift: no finding")
        return out + self.gates


def _dynamic_lines(d: dict[str, Any]) -> list[str]:
    def line(name: str, m: dict[str, Any]) -> str:
        return (f"{name:<17} {m['cases']:>4} paired, {100 * m['agreement']:.1f}% identical outputs, flips "
                f"{m['pass_to_fail']} pass->fail / {m['fail_to_pass']} fail->pass (McNemar p={m['mcnemar_p']:.3g})")

    cols = d["columns"]
    label = "endpoint" if "endpoint" in cols else "gguf"
    served = f"{cols['endpoint']} (endpoint)" if label == "endpoint" else f"{cols['gguf']} (llama.cpp)"
    ended = d["ended_eos"]
    return [f"paired generations: {cols['source']} (HF) vs {served}",
            *(line(name, m) for name, m in d["batteries"].items()), line("all", d),
            f"ended on an end-of-generation token: HF {ended['source']}/{d['cases']}, {label.upper()} "
            f"{ended[label]}/{d['cases']}"]


def run_paired(source: Path, gguf: Path | str, batteries: list[str], max_new_tokens: int | None = None,
               device: str | None = None, use_cache: bool = True, out: Path | None = None,
               **endpoint: Any) -> Any:
    """The batteries on the source (HF engine) and the GGUF (llama.cpp, its embedded template) or the endpoint URL
    (its server's template and stops; ``endpoint``: the ProbeOptions endpoint fields) in one probe run; the run."""
    from evalsuite.probe.options import ProbeOptions
    from evalsuite.probe.runner import run_probes

    options = ProbeOptions(batteries=list(batteries), explicit_batteries=bool(batteries),
                           max_new_tokens=max_new_tokens, device=device, use_cache=use_cache, **endpoint)
    return run_probes([source, gguf], options, out)
