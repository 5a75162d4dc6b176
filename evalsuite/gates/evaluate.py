"""Applying gates to results: absolute thresholds, and paired regression tests against a baseline.

A regression gate pairs the candidate's and the baseline's samples by (battery, case) for one
adapter pairing, recomputes the metric on the paired cases, and fails only when the worsening is
beyond the tolerance AND significant at ``alpha``: exact McNemar on the pass/fail flips for metrics
built from pass/fail, paired bootstrap for metrics built from continuous scores. Identical results
therefore never fail (no worsening, no flips). Flipped cases are listed with their prompts.

:func:`evaluate_gates` is the one entry point (CLI and pytest plugin). Bad input (unknown battery
or metric, a regression gate without a baseline, nothing to pair) raises ``EvalsuiteError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.gates.expr import AbsoluteDrop, Gate, RelativeDrop, Threshold
from evalsuite.results.aggregate import MetricSpec, sample_values, scaled_mean, spec_of
from evalsuite.results.schema import AdapterInfo, Results, Sample
from evalsuite.results.stats import BOOTSTRAP_TEST, DEFAULT_SEED, fmt_p, mcnemar_exact_p, paired_bootstrap_p

MAX_FLIPS_SHOWN = 20


@dataclass(frozen=True)
class Flip:
    """A case whose verdict changed between baseline and candidate."""

    battery: str
    case: str
    prompt: str
    direction: str  # "pass->fail" or "fail->pass"
    output: str = ""
    baseline_output: str = ""


@dataclass
class GateResult:
    gate: Gate
    adapter: str
    passed: bool
    reason: str
    baseline_adapter: str | None = None
    value: float | None = None
    baseline_value: float | None = None
    p_value: float | None = None
    test: str | None = None
    flips: list[Flip] = field(default_factory=list)
    skipped: bool = False

    @property
    def verdict(self) -> str:
        return "SKIP" if self.skipped else ("PASS" if self.passed else "FAIL")

    def line(self) -> str:
        target = self.adapter
        if self.baseline_adapter is not None:
            target += f" vs baseline {self.baseline_adapter}"
        return f"{self.verdict} {self.gate.describe()} [{target}]: {self.reason}"


@dataclass
class GateReport:
    results: list[GateResult]
    alpha: float
    # ``NOT RUN: ...`` lines: samples of the gated results the model was not let to answer (no verdict, in no
    # metric). Any makes the report incomplete: the gate command exits 2 whatever the gates say.
    not_run: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # the baseline's not-run samples (left out of the pairing)

    @property
    def passed(self) -> bool:
        return all(r.passed or r.skipped for r in self.results)

    @property
    def incomplete(self) -> bool:
        """Some gated sample was not run: the gates saw only part of the cases, so no verdict is final."""
        return bool(self.not_run)

    def lines(self, max_flips: int = MAX_FLIPS_SHOWN) -> list[str]:
        out: list[str] = []
        for r in self.results:
            out.append(r.line())
            for direction in ("pass->fail", "fail->pass"):
                flips = [f for f in r.flips if f.direction == direction]
                out += [f"    {direction} {f.battery}[{f.case}]: {_short(f.prompt)}"
                        for f in flips[:max_flips]]
                if len(flips) > max_flips:
                    out.append(f"    ... and {len(flips) - max_flips} more {direction}")
        failed = sum(not r.passed and not r.skipped for r in self.results)
        out += self.notes + self.not_run
        out.append(f"gates: {len(self.results) - failed} passed, {failed} failed" if self.results
                   else "gates: none configured")
        return out


def _short(text: str, limit: int = 80) -> str:
    one = " ".join(text.split())
    return repr(one if len(one) <= limit else one[: limit - 3] + "...")


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _spec(results: Results, gate: Gate, skip_missing: bool) -> MetricSpec | None:
    label = results.path.name if results.path else "results"
    batteries = results.batteries()
    if gate.battery not in batteries:
        if skip_missing:
            return None
        raise EvalsuiteError(f'gate "{gate.expr}": battery "{gate.battery}" is not in {label} '
                             f"(have: {', '.join(batteries) or 'none'})")
    names = results.metric_names(gate.battery)
    if gate.metric not in names:
        raise EvalsuiteError(f'gate "{gate.expr}": battery {gate.battery} has no metric "{gate.metric}" '
                             f"(have: {', '.join(names)})")
    row = next(m for m in results.metrics if m.battery == gate.battery and m.name == gate.metric)
    spec = spec_of(row)
    if spec is None:
        raise EvalsuiteError(f'gate "{gate.expr}": {label} does not say how {gate.metric} is computed '
                             "(metric row without source); re-run the probes with this evalsuite")
    sign = getattr(gate, "sign", None)
    worse = "-" if spec.higher_is_better else "+"
    if sign is not None and sign != worse:
        direction = "higher" if spec.higher_is_better else "lower"
        tolerance = gate.describe().split(": ", 1)[1].lstrip("+-")
        raise EvalsuiteError(f'gate "{gate.expr}": {gate.metric} is {direction}-is-better, so the allowed '
                             f'regression is written "{gate.battery}.{gate.metric}: {worse}{tolerance}"')
    return spec


def _threshold(gate: Threshold, results: Results, adapter: str) -> GateResult:
    row = results.metric(gate.battery, adapter, gate.metric)
    if row is None:
        return GateResult(gate, adapter, True, f"no {gate.battery} results for this adapter", skipped=True)
    ci = f" (n={row.n})"
    if row.ci_low is not None and row.ci_high is not None:
        ci = f" (CI {_fmt(row.ci_low)}..{_fmt(row.ci_high)}, n={row.n})"
    ok = gate.holds(row.value)
    reason = f"{_fmt(row.value)}{ci} {'satisfies' if ok else 'violates'} {gate.op} {_fmt(gate.threshold)}"
    return GateResult(gate, adapter, ok, reason, value=row.value)


def pair_adapter(candidate: Results, baseline: Results, adapter: str) -> str:
    """The baseline column an adapter is compared with: same name, else the same role
    (the base with the base; an adapter with the baseline's only adapter)."""
    names = [a.name for a in baseline.adapters]
    if adapter in names:
        return adapter
    kind = candidate.adapter(adapter).kind
    same_kind = [a.name for a in baseline.adapters if a.kind == kind]
    if len(same_kind) == 1:
        return same_kind[0]
    raise EvalsuiteError(f"cannot pair adapter {adapter!r} with a baseline column: the baseline has "
                         f"{', '.join(names)}; name the adapters alike or gate one with --adapter")


def paired_samples(candidate: list[Sample], baseline: list[Sample]) -> list[tuple[Sample, Sample]]:
    """(baseline, candidate) pairs on the cases both have and both ran, in the baseline's order (a not-run sample
    has no verdict to compare)."""
    by_case = {s.case: s for s in candidate if s.ran}
    return [(b, by_case[b.case]) for b in baseline if b.case in by_case and b.ran]


def flips_of(pairs: list[tuple[Sample, Sample]]) -> list[Flip]:
    return [Flip(c.battery, c.case, c.prompt, "pass->fail" if b.passed else "fail->pass", c.output, b.output)
            for b, c in pairs if b.passed != c.passed]


@dataclass(frozen=True)
class PairedComparison:
    """A metric recomputed on the cases two columns share, with the paired test's p-value."""

    ref_value: float
    value: float
    n: int
    p_value: float
    test: str
    flips: list[Flip]


def compare_paired(spec: MetricSpec, ref: list[Sample], cand: list[Sample],
                   seed: int = DEFAULT_SEED) -> PairedComparison | None:
    """Pair ``cand`` with ``ref`` by case and test the difference (None when nothing pairs).

    Pass/fail metrics use exact McNemar on the flipped cases; score metrics the paired bootstrap.
    Used by regression gates and by the report's deltas, so both always agree.
    """
    pairs = paired_samples(cand, ref)
    if not pairs:
        return None
    b_vals = sample_values([b for b, _ in pairs], spec.source)
    c_vals = sample_values([c for _, c in pairs], spec.source)
    flips = flips_of(pairs)
    if spec.source in ("passed", "failed"):
        lost = sum(f.direction == "pass->fail" for f in flips)
        p = mcnemar_exact_p(lost, len(flips) - lost)
        test = f"exact McNemar, {lost} pass->fail / {len(flips) - lost} fail->pass"
    else:
        scaled = [spec.scale * v for v in b_vals], [spec.scale * v for v in c_vals]
        _, p = paired_bootstrap_p(*scaled, seed=seed)
        test = BOOTSTRAP_TEST
    return PairedComparison(scaled_mean(b_vals, spec.scale), scaled_mean(c_vals, spec.scale), len(pairs),
                            p, test, flips)


def _regression(gate: AbsoluteDrop | RelativeDrop, spec: MetricSpec, cand: Results, base: Results,
                adapter: str, alpha: float, seed: int) -> GateResult:
    base_adapter = pair_adapter(cand, base, adapter)
    _check_same_base(cand, base, adapter, base_adapter)
    cmp = compare_paired(spec, base.samples_for(gate.battery, base_adapter),
                         cand.samples_for(gate.battery, adapter), seed)
    if cmp is None:
        raise EvalsuiteError(f'gate "{gate.expr}": no {gate.battery} cases in common between {adapter!r} '
                             f"and the baseline's {base_adapter!r}")
    b_value, c_value, p, test, flips = cmp.ref_value, cmp.value, cmp.p_value, cmp.test, cmp.flips
    worsening = (b_value - c_value) if spec.higher_is_better else (c_value - b_value)
    allowed = gate.allowed(b_value)
    beyond = worsening > allowed + 1e-12
    significant = p < alpha
    delta = c_value - b_value
    head = f"{_fmt(c_value)} vs baseline {_fmt(b_value)} ({delta:+.4g} on {cmp.n} paired cases)"
    stat = f"{fmt_p(p, test)} {'<' if significant else '>='} alpha {alpha:g} ({test})"
    if not beyond:
        reason = f"{head}: within the allowed worsening of {_fmt(allowed)}; {stat}"
    else:
        verdict = "and significant" if significant else "but not significant"
        reason = f"{head}: worse by {_fmt(worsening)}, beyond the allowed {_fmt(allowed)} {verdict}, {stat}"
    return GateResult(gate, adapter, not (beyond and significant), reason, baseline_adapter=base_adapter,
                      value=c_value, baseline_value=b_value, p_value=p, test=test, flips=flips)


def incomplete(results: Results, battery: str) -> str | None:
    """Why ``battery``'s numbers in a partial results file are not the full run's (None when it ran in full)."""
    partial = results.partial or {}
    counts = (partial.get("batteries") or {}).get(battery)
    if counts is None:
        return None
    return (f"a partial run ({partial.get('selection') or 'a selection'}): battery {battery} ran {counts['ran']} of "
            f"its {counts['planned']} planned cases")


def _check_complete(gate: Gate, sides: list[Results], accept_partial: bool) -> None:
    for side in sides:
        why = None if accept_partial else incomplete(side, gate.battery)
        if why:
            raise EvalsuiteError(f'{side.path or "results"}: gate "{gate.expr}": {why}; a gate needs the full run '
                                 "(run every case, or pass --accept-partial to gate these numbers anyway)")


def _check_same_base(cand: Results, base: Results, adapter: str, base_adapter: str) -> None:
    """A regression gate compares one fine-tune with its baseline on the same base model; another base's baseline
    measures a different model (the adapters' names can still match)."""
    ours, theirs = cand.adapter(adapter), base.adapter(base_adapter)
    if ours.kind == "gguf" or theirs.kind == "gguf":
        return  # a GGUF column's base_model is the file itself
    if _base_identity(ours) != _base_identity(theirs):
        raise EvalsuiteError(f"{base.path or 'baseline'}: recorded on base model {theirs.base_model!r} "
                             f"({base_adapter!r}), but {adapter!r} in {cand.path or 'the results'} runs on "
                             f"{ours.base_model!r}; record a baseline on the same base")


def _base_identity(info: AdapterInfo) -> tuple[str, Any]:
    """The base's hub id (or folder name: the same base in another folder matches) and its pinned revision."""
    name = info.base_model
    if "/" in name and (name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name):
        name = PurePath(name).name
    return name, (info.manifest or {}).get("base_model_revision")


def evaluate_gates(results: Results, baseline: Results | None, gates: list[Gate], alpha: float = 0.05,
                   adapters: list[str] | None = None, seed: int = DEFAULT_SEED,
                   skip_missing: bool = False, accept_partial: bool = False) -> GateReport:
    """Apply ``gates`` to each gated adapter of ``results`` (every non-base one unless ``adapters``).

    ``skip_missing`` turns a gate on a battery absent from the results, or run only in part (pytest ``-k``/``--lf``),
    into a SKIP line instead of an error (the pytest plugin uses it when ``--battery`` selects a subset). Otherwise a
    gate on a battery a partial results file (or baseline) holds only some cases of is an error unless
    ``accept_partial``.
    """
    if not 0.0 < alpha < 1.0:
        raise EvalsuiteError(f"--alpha: expected a level between 0 and 1, got {alpha}")
    known = [a.name for a in results.adapters]
    for name in adapters or []:
        if name not in known:
            raise EvalsuiteError(f"--adapter: {name!r} is not in the results (have: {', '.join(known)})")
    targets = adapters or results.gated_adapters()
    out: list[GateResult] = []
    for gate in gates:
        why = incomplete(results, gate.battery)
        if why and skip_missing and not accept_partial:
            out += [GateResult(gate, a, True, why, skipped=True) for a in targets]
            continue
        _check_complete(gate, [results] if isinstance(gate, Threshold) or baseline is None else [results, baseline],
                        accept_partial)
        ran = [s for s in results.samples if s.battery == gate.battery and s.adapter in targets]
        if ran and not any(s.ran for s in ran):  # nothing to measure: the not-run lines say why (exit 2)
            out += [GateResult(gate, a, True, f"no {gate.battery} sample of this column ran", skipped=True)
                    for a in targets]
            continue
        spec = _spec(results, gate, skip_missing)
        if spec is None:
            out += [GateResult(gate, a, True, f"battery {gate.battery} not in these results", skipped=True)
                    for a in targets]
            continue
        if isinstance(gate, Threshold):
            out += [_threshold(gate, results, a) for a in targets]
            continue
        if baseline is None:
            raise EvalsuiteError(f'gate "{gate.expr}" compares against a baseline: pass --baseline FILE '
                                 "(record one with `evalsuite baseline record`)")
        if _spec(baseline, gate, skip_missing=False) is None:  # pragma: no cover - raises instead
            continue
        out += [_regression(gate, spec, results, baseline, a, alpha, seed) for a in targets]
    return GateReport(out, alpha, not_run_lines(results, targets), not_run_lines(baseline, None, "baseline: ")
                      if baseline is not None else [])


def not_run_lines(results: Results, adapters: list[str] | None, prefix: str = "") -> list[str]:
    """``NOT RUN: n sample(s) of ADAPTER (batteries) have no verdict: why`` per adapter and reason."""
    mine = [s for s in results.not_run() if adapters is None or s.adapter in adapters]
    lines = []
    for adapter, why in dict.fromkeys((s.adapter, s.not_run_reason) for s in mine):
        same = [s for s in mine if (s.adapter, s.not_run_reason) == (adapter, why)]
        batteries = ", ".join(dict.fromkeys(s.battery for s in same))
        lines.append(f"{prefix}NOT RUN: {len(same)} sample(s) of {adapter} ({batteries}) have no verdict and are in "
                     f"no metric: {why}")
    return lines
