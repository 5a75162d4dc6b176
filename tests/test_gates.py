"""Gate language, gate evaluation and the paired regression tests (no CLI here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsuite.errors import EvalsuiteError
from evalsuite.gates.evaluate import evaluate_gates
from evalsuite.gates.expr import AbsoluteDrop, RelativeDrop, Threshold, merge_gates, parse_gate, parse_gates
from evalsuite.results.aggregate import compute_metrics
from evalsuite.results.io import load_results
from evalsuite.results.schema import AdapterInfo, EngineInfo, Results, Sample, ScorerRef

DATA = Path(__file__).parent / "data" / "results"


@pytest.mark.parametrize(("expr", "expected"), [
    ("squad.exact_match >= 60", Threshold("squad.exact_match >= 60", "squad", "exact_match", ">=", 60.0)),
    ("runaway-turns.rate <= 0.02",
     Threshold("runaway-turns.rate <= 0.02", "runaway-turns", "rate", "<=", 0.02)),
    ("cyrillic.accuracy>=0.9", Threshold("cyrillic.accuracy>=0.9", "cyrillic", "accuracy", ">=", 0.9)),
    ("  a.b < -1e-3 ", Threshold("  a.b < -1e-3 ", "a", "b", "<", -0.001)),
    ("a.b == 1", Threshold("a.b == 1", "a", "b", "==", 1.0)),
    ("a.b>.5", Threshold("a.b>.5", "a", "b", ">", 0.5)),
    ("uppercase-echo.accuracy: -2%",
     RelativeDrop("uppercase-echo.accuracy: -2%", "uppercase-echo", "accuracy", 2.0, "-")),
    ("squad.f1: -1.5", AbsoluteDrop("squad.f1: -1.5", "squad", "f1", 1.5, "-")),
    ("squad.f1:1.5", AbsoluteDrop("squad.f1:1.5", "squad", "f1", 1.5, None)),
    ("runaway-turns.rate : +0.01",
     AbsoluteDrop("runaway-turns.rate : +0.01", "runaway-turns", "rate", 0.01, "+")),
    ("my.battery.v2.f1 >= 3", Threshold("my.battery.v2.f1 >= 3", "my.battery.v2", "f1", ">=", 3.0)),
])
def test_parse_valid(expr: str, expected: object) -> None:
    assert parse_gate(expr) == expected


@pytest.mark.parametrize(("expr", "message"), [
    ("squad.f1 >> 3", 'gate "squad.f1 >> 3": expected an operator (>=, >, <=, <, ==) and a number, or a '
                      'regression tolerance like ": -2%" after "squad.f1", got ">> 3"'),
    ("squad.f1 => 3", 'got "=> 3"'),
    ("squad.f1 >= ", 'got ">="'),
    ("squad.f1 >= sixty", 'got ">= sixty"'),
    ("squad.f1", 'after "squad.f1", got ""'),
    ("squad >= 3", 'gate "squad >= 3": expected BATTERY.METRIC (like squad.f1), got "squad"'),
    (".f1 >= 3", 'got ".f1"'),
    ("squad. >= 3", 'got "squad."'),
    ("", 'gate "": expected BATTERY.METRIC'),
    ("squad.f1: -2%%", 'gate "squad.f1: -2%%": expected a tolerance like -2% or -1.5 after ":", got "-2%%"'),
    ("squad.f1: lots", 'got "lots"'),
    ("squad.f1 >= 3 and more", 'got ">= 3 and more"'),
])
def test_parse_invalid(expr: str, message: str) -> None:
    with pytest.raises(EvalsuiteError) as info:
        parse_gate(expr)
    assert message in str(info.value)


def test_parse_gates_prefixes_location_and_merge_overrides() -> None:
    with pytest.raises(EvalsuiteError, match=r'^--gate\[1\]: gate "x"'):
        parse_gates(["a.b >= 1", "x"], "--gate")
    declared = parse_gates(["squad.f1: -1", "squad.f1 >= 50", "squad.exact_match >= 60"])
    merged = merge_gates(declared, parse_gates(["squad.f1: -3"]))
    assert [g.expr for g in merged] == ["squad.f1 >= 50", "squad.exact_match >= 60", "squad.f1: -3"]


# --- evaluation on the synthetic files --------------------------------------------------------

def _lines(report: object) -> str:
    return "\n".join(report.lines())  # type: ignore[attr-defined]


def test_absolute_gates_per_adapter() -> None:
    three = load_results(DATA / "three.json")
    gates = parse_gates(["squad.exact_match >= 60", "runaway-turns.rate <= 0.5"])
    report = evaluate_gates(three, None, gates)
    # Every non-base adapter is gated, the base is not.
    assert [(r.adapter, r.verdict) for r in report.results][:2] == [("r4", "PASS"), ("r8", "PASS")]
    assert all(r.adapter != "base" for r in report.results)
    only_base = evaluate_gates(three, None, parse_gates(["squad.exact_match >= 60"]), adapters=["base"])
    assert [r.verdict for r in only_base.results] == ["FAIL"] and not only_base.passed
    assert "violates >= 60" in _lines(only_base)
    with pytest.raises(EvalsuiteError, match="--adapter: 'nope' is not in the results"):
        evaluate_gates(three, None, [], adapters=["nope"])


def test_regression_fails_only_when_beyond_and_significant() -> None:
    good, bad = load_results(DATA / "good.json"), load_results(DATA / "bad.json")
    report = evaluate_gates(bad, good, parse_gates(["squad.f1: -1.5", "uppercase-echo.accuracy: -2%",
                                                    "squad.exact_match: -70%"]))
    f1, echo, em = report.results
    assert f1.verdict == "FAIL" and "beyond the allowed 1.5 and significant" in f1.reason
    assert f1.p_value is not None and f1.p_value < 0.05 and f1.baseline_adapter == "good"
    # uppercase-echo: 5 of 20 flipped one way is beyond 2% but exact McNemar p = 0.0625.
    assert echo.verdict == "PASS" and "but not significant" in echo.reason
    assert echo.p_value == pytest.approx(2 / 2**5)
    assert {f.direction for f in echo.flips} == {"pass->fail"} and len(echo.flips) == 5
    # A huge tolerance passes even though the drop is significant.
    assert em.verdict == "PASS" and "within the allowed" in em.reason
    text = _lines(report)
    assert "pass->fail squad[q" in text and "gates: 2 passed, 1 failed" in text
    assert not report.passed
    # With a looser alpha the echo drop becomes a failure.
    loose = evaluate_gates(bad, good, parse_gates(["uppercase-echo.accuracy: -2%"]), alpha=0.1)
    assert not loose.passed


def test_regression_errors() -> None:
    good, three = load_results(DATA / "good.json"), load_results(DATA / "three.json")
    with pytest.raises(EvalsuiteError, match="compares against a baseline"):
        evaluate_gates(good, None, parse_gates(["squad.f1: -1"]))
    with pytest.raises(EvalsuiteError, match="cannot pair adapter 'good'"):
        evaluate_gates(good, three, parse_gates(["squad.f1: -1"]))
    with pytest.raises(EvalsuiteError, match=r'should|"runaway-turns.rate: \+5"'):
        evaluate_gates(good, good, parse_gates(["runaway-turns.rate: -5"]))
    with pytest.raises(EvalsuiteError, match="alpha"):
        evaluate_gates(good, good, [], alpha=1.5)
    skipped = evaluate_gates(good, None, parse_gates(["cyrillic.accuracy >= 0.9"]), skip_missing=True)
    assert skipped.passed and skipped.results[0].verdict == "SKIP"


# --- properties ------------------------------------------------------------------------------

def _results(battery: str, outcomes: list[tuple[bool, float]], name: str = "a") -> Results:
    samples = [Sample(battery=battery, case=f"c{i}", adapter=name, prompt=f"p{i}", output="o",
                      finish_reason="eos", tokens=1, latency_s=0.0, scorer=ScorerRef("s"),
                      passed=ok, score=score) for i, (ok, score) in enumerate(outcomes)]
    return Results(created="t", evalsuite_version="0", engine=EngineInfo("hf", 0, 8),
                   adapters=[AdapterInfo(name, "adapter", "tiny")], samples=samples,
                   metrics=compute_metrics(samples))


outcome_lists = st.lists(st.tuples(st.booleans(), st.floats(0, 1)), min_size=1, max_size=40)
TOLERANCES = st.sampled_from(["-0", "-0%", "-1%", "-0.5", "-5%"])


@settings(max_examples=60, deadline=None)
@given(outcome_lists, TOLERANCES, st.sampled_from(["accuracy", "exact_match", "f1"]))
def test_identical_results_never_fail_a_regression_gate(outcomes: list[tuple[bool, float]], tol: str,
                                                        metric: str) -> None:
    res = _results("squad", outcomes)
    for gate in (f"squad.{metric}: {tol}",):
        report = evaluate_gates(res, _results("squad", outcomes), parse_gates([gate]))
        assert report.passed, _lines(report)
        assert report.results[0].flips == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1), st.booleans(), st.floats(0, 1)), min_size=1,
                max_size=40),
       st.sampled_from(["squad.accuracy: -0", "squad.f1: -0", "squad.exact_match: -0%"]))
def test_paired_verdict_is_symmetric(rows: list[tuple[bool, float, bool, float]], gate: str) -> None:
    a = _results("squad", [(r[0], r[1]) for r in rows])
    b = _results("squad", [(r[2], r[3]) for r in rows])
    ab = evaluate_gates(b, a, parse_gates([gate])).results[0]
    ba = evaluate_gates(a, b, parse_gates([gate])).results[0]
    # Same evidence either way round: same p-value and the same flips, reversed.
    assert ab.p_value == ba.p_value
    assert sorted((f.case, f.direction) for f in ab.flips) == sorted(
        (f.case, "fail->pass" if f.direction == "pass->fail" else "pass->fail") for f in ba.flips)
    # A zero-tolerance regression cannot be significant in both directions at once.
    assert ab.passed or ba.passed


def test_bootstrap_floor_reads_as_a_bound_in_the_gate_reason() -> None:
    # Scores that drop a different amount on each of 40 cases: no bootstrap resample is as
    # extreme, so p sits at the test's floor, whose exact value is unknown ("p<", not "p=").
    base = _results("squad", [(True, 0.9)] * 40)
    cand = _results("squad", [(True, 0.9 - 0.01 * (1 + i % 7)) for i in range(40)])
    result = evaluate_gates(cand, base, parse_gates(["squad.f1: -0"])).results[0]
    assert not result.passed
    assert "p<0.0005 < alpha 0.05 (paired bootstrap)" in result.reason, result.reason
    assert "p=0.0005" not in result.reason
