"""Gates and report verdicts at their boundaries, on hand-made results whose values are known by construction:
a threshold equal to the value (``>`` vs ``>=``), a worsening equal to the tolerance, an exact McNemar p equal to
alpha (5 pass->fail flips and none back: p = 2 * 0.5**5 = 0.0625), and each report column's own control."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hand_results import flips, write
from report_support import md_cells, md_tables

from evalsuite.gates.evaluate import evaluate_gates
from evalsuite.gates.expr import parse_gate
from evalsuite.report import build_report
from evalsuite.results.io import load_results

COLUMNS = [("base", "base"), ("lora", "adapter")]
P_FIVE_FLIPS = 2 * 0.5**5  # exact two-sided McNemar p for 5 flips one way, 0 the other


@pytest.fixture()
def half(tmp_path: Path) -> Path:
    """lora passes 2 of 4 cases: accuracy exactly 0.5."""
    rows = [("open", f"c{i}", "lora", "x", i < 2) for i in range(4)]
    return write(tmp_path / "half.json", [("lora", "adapter")], rows)


@pytest.mark.parametrize(("expr", "passes"), [
    ("open.accuracy > 0.5", False), ("open.accuracy >= 0.5", True), ("open.accuracy < 0.5", False),
    ("open.accuracy <= 0.5", True), ("open.accuracy == 0.5", True),
    ("open.accuracy > 0.49", True), ("open.accuracy >= 0.51", False), ("open.accuracy < 0.51", True),
    ("open.accuracy <= 0.49", False), ("open.accuracy == 0.51", False),
])
def test_thresholds_on_both_sides_of_the_value(half: Path, expr: str, passes: bool) -> None:
    report = evaluate_gates(load_results(half), None, [parse_gate(expr)])
    (result,) = report.results
    assert (result.passed, report.passed, result.value) == (passes, passes, 0.5)


def _five_lost(tmp_path: Path) -> Path:
    """base passes all 10 cases, lora loses 5 of them (accuracy 1.0 -> 0.5, worsening 0.5)."""
    return write(tmp_path / "five.json", COLUMNS, flips("open", "lora", "base", lost=5, gained=0, same_pass=5))


@pytest.mark.parametrize(("alpha", "fails"), [(0.05, False), (P_FIVE_FLIPS, False), (0.0626, True), (0.2, True)])
def test_regression_is_significant_only_below_alpha(tmp_path: Path, alpha: float, fails: bool) -> None:
    path = _five_lost(tmp_path)
    results = load_results(path)
    baseline = load_results(write(tmp_path / "baseline.json", [("lora", "adapter")],
                                  [("open", f"c{i:02d}", "lora", "right", True) for i in range(10)]))
    (result,) = evaluate_gates(results, baseline, [parse_gate("open.accuracy: -0.1")], alpha=alpha).results
    assert result.p_value == P_FIVE_FLIPS and (result.baseline_value, result.value) == (1.0, 0.5)
    assert result.passed is not fails, result.reason
    assert ("but not significant" in result.reason) is not fails


@pytest.mark.parametrize(("gate", "fails"), [
    ("open.accuracy: -0.5", False), ("open.accuracy: -0.49", True), ("open.accuracy: -0.51", False),
    ("open.accuracy: -50%", False), ("open.accuracy: -49%", True),
])
def test_worsening_equal_to_the_tolerance_is_allowed(tmp_path: Path, gate: str, fails: bool) -> None:
    results = load_results(_five_lost(tmp_path))
    baseline = load_results(write(tmp_path / "baseline.json", [("lora", "adapter")],
                                  [("open", f"c{i:02d}", "lora", "right", True) for i in range(10)]))
    (result,) = evaluate_gates(results, baseline, [parse_gate(gate)], alpha=0.2).results
    assert result.passed is not fails, result.reason
    assert ("within the allowed worsening" in result.reason) is not fails


def _summary(md: str) -> list[list[str]]:
    _, body = next((h, b) for h, b in md_tables(md) if h.startswith("| battery | metric | control | candidate"))
    return [md_cells(line) for line in body]


@pytest.mark.parametrize(("alpha", "verdict"), [(0.05, "not significant"), (P_FIVE_FLIPS, "not significant"),
                                                (0.0626, "worse"), (0.2, "worse")])
def test_report_calls_a_delta_worse_only_when_significant(tmp_path: Path, alpha: float, verdict: str) -> None:
    path = _five_lost(tmp_path)
    md = tmp_path / "r.md"
    build_report([path], markdown=md, alpha=alpha)
    (row,) = _summary(md.read_text(encoding="utf-8"))
    battery, metric, control, candidate, delta, _p, shown, n = row
    assert (battery, metric, n) == ("open", "accuracy", "10")
    assert control.endswith("(base)") and candidate.endswith("(lora)") and delta.lstrip("*").startswith("-0.500")
    assert delta.startswith("**") is (verdict == "worse")  # bold only for a significant change
    if verdict == "worse":
        assert "worse" in shown and "not significant" not in shown and shown.startswith("**")
    else:
        assert "not significant" in shown and "worse" not in shown and not shown.startswith("**")
    assert "(0 fail→pass, 5 pass→fail)" in shown


def test_each_file_is_compared_with_its_own_base_column(tmp_path: Path) -> None:
    # a.json: the base passes everything, lora loses 5 of 10; b.json: the base fails everything, lora gains all 10
    a = write(tmp_path / "a.json", COLUMNS, flips("open", "lora", "base", lost=5, gained=0, same_pass=5))
    b = write(tmp_path / "b.json", COLUMNS, flips("open", "lora", "base", lost=0, gained=10))
    md = tmp_path / "r.md"
    model = build_report([a, b], markdown=md, alpha=0.05)
    controls = {r.candidate.file: (r.control.file, r.control.name) for r in model.summary}
    assert controls == {"a": ("a", "base"), "b": ("b", "base")}  # files are named by their stem
    rows = {r[3]: r for r in _summary(md.read_text(encoding="utf-8"))}
    assert set(rows) == {"0.500 (a:lora)", "1.000 (b:lora)"}, rows
    assert rows["0.500 (a:lora)"][2] == "1.000 (a:base)"
    assert rows["1.000 (b:lora)"][2] == "0.000 (b:base)"
    assert rows["1.000 (b:lora)"][4].replace("*", "").startswith("+1.000")


def _with_failure_rate(path: Path) -> Path:
    """Add a lower-is-better ``rate`` metric (the share of failed cases) to a hand-made file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for m in list(data["metrics"]):
        data["metrics"].append({**m, "name": "rate", "value": 1.0 - m["value"], "source": "failed",
                                "higher_is_better": False})
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_rising_failure_rate_is_worse_in_the_report_and_the_gates(tmp_path: Path) -> None:
    path = _with_failure_rate(_five_lost(tmp_path))  # rate: base 0.0, lora 0.5
    md = tmp_path / "r.md"
    build_report([path], markdown=md, alpha=0.2)
    rows = {r[1]: r for r in _summary(md.read_text(encoding="utf-8"))}
    assert rows["rate"][4].lstrip("*").startswith("+0.500") and "worse" in rows["rate"][6]
    assert "better" not in rows["rate"][6]
    baseline = load_results(_with_failure_rate(write(tmp_path / "baseline.json", [("lora", "adapter")],
                                                     [("open", f"c{i:02d}", "lora", "right", True)
                                                      for i in range(10)])))
    results = load_results(path)
    for gate, passes in [("open.rate: +0.1", False), ("open.rate: +0.5", True), ("open.rate <= 0.5", True),
                         ("open.rate < 0.5", False)]:
        (result,) = evaluate_gates(results, baseline, [parse_gate(gate)], alpha=0.2).results
        assert result.passed is passes, (gate, result.reason)
