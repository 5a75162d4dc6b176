"""Issue 31, "silently wrong": inputs that used to give a plausible but wrong answer now give one clear error (exit 2,
the file and field named, no traceback). Results files are edited copies of tests/data/results/good.json (written by
the real aggregation code); expected numbers are counted here from the samples, not taken from the code under test."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ROOT, run_cli, tree_digest

from evalsuite.chat.template import resolve_template
from evalsuite.errors import EvalsuiteError
from evalsuite.probe.batteries import load_battery
from evalsuite.results.consistency import check_consistency
from evalsuite.results.io import load_results

GOOD = ROOT / "tests" / "data" / "results" / "good.json"
TINY = ROOT / "fixtures" / "tiny-base"


def good() -> dict[str, Any]:
    return json.loads(GOOD.read_text(encoding="utf-8"))


def variant(tmp: Path, edit: Callable[[dict[str, Any]], None], name: str = "r.json") -> Path:
    data = good()
    edit(data)
    out = tmp / name
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


def metric_index(data: dict[str, Any], battery: str, adapter: str, name: str) -> int:
    return next(i for i, m in enumerate(data["metrics"])
                if (m["battery"], m["adapter"], m["name"]) == (battery, adapter, name))


def one_error(done: Any) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


# -- (d) metrics that contradict their samples -------------------------------------------------------------------

def _accuracy_of_base(data: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    return metric_index(data, "uppercase-echo", "base", "accuracy"), [
        s for s in data["samples"] if (s["battery"], s["adapter"]) == ("uppercase-echo", "base")]


def _five_with_ci_7_1(d: dict[str, Any]) -> None:
    i, _ = _accuracy_of_base(d)
    d["metrics"][i].update(value=5.0, ci_low=7.0, ci_high=1.0)


def _value_outside_ci(d: dict[str, Any]) -> None:
    i, _ = _accuracy_of_base(d)
    d["metrics"][i].update(ci_low=0.5, ci_high=0.6)


def _zero_samples(d: dict[str, Any]) -> None:
    i, _ = _accuracy_of_base(d)
    d["metrics"][i]["n"] = 0


def _metric_without_samples(d: dict[str, Any]) -> None:
    d["samples"] = [s for s in d["samples"] if (s["battery"], s["adapter"]) != ("uppercase-echo", "base")]


def _wrong_value(d: dict[str, Any]) -> None:
    i, _ = _accuracy_of_base(d)
    d["metrics"][i].update(value=1.0, ci_low=0.9, ci_high=1.0)


def _negative_latency(d: dict[str, Any]) -> None:
    d["samples"][3]["latency_s"] = -0.5


CONTRADICTIONS = {
    "five-ci-7-1": (_five_with_ci_7_1, "metrics[0]", "low end above its high"),
    "outside-ci": (_value_outside_ci, "metrics[0].value", "outside its confidence interval [0.5, 0.6]"),
    "n-zero": (_zero_samples, "metrics[0].n", "n=0: a metric over no samples"),
    "no-samples": (_metric_without_samples, "metrics[0].n", "says n=20 but the file holds 0 samples"),
    "wrong-value": (_wrong_value, "metrics[0].value", "is 1 but its 20 samples give 0.25"),
    "negative-latency": (_negative_latency, "samples[3].latency_s", "expected a number >= 0, got -0.5"),
}


def test_the_fixture_is_consistent_and_its_numbers_are_what_the_samples_give() -> None:
    data = good()
    i, samples = _accuracy_of_base(data)
    assert i == 0 and len(samples) == 20  # the cases above edit this row
    assert data["metrics"][i]["value"] == sum(s["passed"] for s in samples) / len(samples) == 0.25
    load_results(GOOD)


@pytest.mark.parametrize("name", list(CONTRADICTIONS))
def test_gate_and_report_refuse_metrics_that_contradict_their_samples(name: str, tmp_path: Path) -> None:
    edit, field, words = CONTRADICTIONS[name]
    path = variant(tmp_path, edit)
    before = tree_digest(tmp_path)
    for argv in (["gate", str(path), "--gate", "uppercase-echo.accuracy >= 0"],
                 ["report", str(path), "-o", str(tmp_path / "out.html")],
                 ["baseline", "record", str(path), "-o", str(tmp_path / "b.json"), "--force"],
                 ["judge", str(path), "--judge", str(tmp_path / "nowhere"), "--pair", "base:good"]):
        line = one_error(run_cli(*argv, timeout=120))
        assert f"{path}: {field}: " in line and words in line, (argv, line)
    assert tree_digest(tmp_path) == before  # nothing written


def test_not_run_samples_count_in_no_metric() -> None:
    """A sample that was not generated (finish_reason ``not-run``) has no verdict: it is in no metric's n."""
    results = load_results(GOOD)
    extra = copy.deepcopy(next(s for s in results.samples if (s.battery, s.adapter) == ("uppercase-echo", "base")))
    extra.case, extra.finish_reason, extra.passed, extra.score = "echo-not-run", "not-run", False, 0.0
    results.samples.append(extra)
    failures: list[tuple[str, str]] = []

    def fail(where: str, message: str) -> Any:
        failures.append((where, message))
        raise EvalsuiteError(message)

    check_consistency(results, fail)  # n=20 and 0.25 still hold: the not-run sample is not counted
    assert failures == []
    extra.finish_reason = "eos"  # counted, it contradicts n=20
    with pytest.raises(EvalsuiteError):
        check_consistency(results, fail)
    assert failures[0][0] == "metrics[0].n"


# -- (e) partial results files -----------------------------------------------------------------------------------

def _partial(d: dict[str, Any]) -> None:
    d["partial"] = {"batteries": {"uppercase-echo": {"planned": 25, "ran": 20}}, "selection": "pytest --lf"}


def test_gate_refuses_a_partial_results_file_unless_told(tmp_path: Path) -> None:
    path = variant(tmp_path, _partial)
    line = one_error(run_cli("gate", str(path), "--gate", "uppercase-echo.accuracy >= 0", timeout=120))
    assert str(path) in line and "partial run (pytest --lf)" in line
    assert "battery uppercase-echo ran 20 of its 25 planned cases" in line and "--accept-partial" in line
    done = run_cli("gate", str(path), "--gate", "uppercase-echo.accuracy >= 0", "--accept-partial", timeout=120)
    assert done.returncode == 0, done.stderr
    # A battery that ran in full is gated as usual.
    done = run_cli("gate", str(path), "--gate", "runaway-turns.accuracy >= 0", timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_partial_baseline_is_refused_too(tmp_path: Path) -> None:
    base = variant(tmp_path, _partial, "base.json")
    line = one_error(run_cli("gate", str(GOOD), "--baseline", str(base), "--gate", "uppercase-echo.accuracy: -5%",
                             timeout=120))
    assert str(base) in line and "ran 20 of its 25" in line


# -- (g) a baseline on another base model; (h) a file given twice; (f) judge on different prompts ----------------

def test_gate_refuses_a_baseline_recorded_on_another_base(tmp_path: Path) -> None:
    def other_base(d: dict[str, Any]) -> None:
        for a in d["adapters"]:
            a["base_model"] = "Qwen/Qwen2.5-7B-Instruct"

    base = variant(tmp_path, other_base, "base.json")
    line = one_error(run_cli("gate", str(GOOD), "--baseline", str(base), "--gate", "uppercase-echo.accuracy: -5%",
                             timeout=120))
    assert "'Qwen/Qwen2.5-7B-Instruct'" in line and "'tiny-qwen'" in line and str(base) in line
    # The same base in another folder is the same base.
    moved = variant(tmp_path, lambda d: [a.update(base_model="/elsewhere/models/tiny-qwen") for a in d["adapters"]],
                    "moved.json")
    done = run_cli("gate", str(GOOD), "--baseline", str(moved), "--gate", "uppercase-echo.accuracy: -50%",
                   timeout=120)
    assert done.returncode in (0, 1), done.stderr


def test_report_refuses_the_same_file_twice(tmp_path: Path) -> None:
    copy_path = tmp_path / "copy.json"
    copy_path.write_bytes(GOOD.read_bytes())
    for argv in ([str(GOOD), str(GOOD)], [str(GOOD), str(copy_path)]):
        line = one_error(run_cli("report", *argv, "-o", str(tmp_path / "r.html"), timeout=120))
        assert str(GOOD) in line and "give each results file once" in line
    assert not (tmp_path / "r.html").exists()


def test_judge_refuses_columns_asked_different_prompts(tmp_path: Path) -> None:
    def reprompt(d: dict[str, Any]) -> None:
        s = next(s for s in d["samples"] if (s["battery"], s["adapter"]) == ("uppercase-echo", "good"))
        s["prompt"] = "a different question"

    path = variant(tmp_path, reprompt)
    before = tree_digest(tmp_path)
    line = one_error(run_cli("judge", str(path), "--judge", str(tmp_path / "nowhere"), "--pair", "base:good",
                             timeout=120))
    assert str(path) in line and "were asked different prompts" in line and "'a different question'" in line
    assert tree_digest(tmp_path) == before


# -- (c) infinite gate thresholds --------------------------------------------------------------------------------

@pytest.mark.parametrize("expr", ["uppercase-echo.accuracy >= 1e999", "uppercase-echo.accuracy >= -1e999",
                                  "uppercase-echo.accuracy: -1e999"])
def test_infinite_thresholds_are_refused(expr: str) -> None:
    line = one_error(run_cli("gate", str(GOOD), "--gate", expr, timeout=120))
    assert "is not a finite number" in line and expr in line


# -- (a) a template path that is a folder or a device ------------------------------------------------------------

@pytest.mark.parametrize("target", ["folder", "/dev/zero"])
def test_chat_template_jinja_must_name_a_regular_file(target: str, tmp_path: Path) -> None:
    path = tmp_path if target == "folder" else Path(target)
    with pytest.raises(EvalsuiteError) as e:
        resolve_template("jinja", str(path), None, "c.yaml:3: chat_template")
    assert f"chat_template_jinja: {path}: " in str(e.value)
    assert ("is a folder" if target == "folder" else "not a regular file") in str(e.value)
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n", encoding="utf-8")
    line = one_error(run_cli("lint", "--tokenizer", TINY, "--data", data, "--chat-template", path, timeout=120))
    assert str(path) in line


# -- (b) a battery's expected of the wrong type for its scorer ---------------------------------------------------

@pytest.mark.parametrize("scorer,expected,words", [
    ("exact_match", '["HI"]', "scorer exact_match expects a string"),
    ("exact_match", "null", "scorer exact_match expects a string"),
    ("squad", "{answer: HI}", "scorer squad expects an answer string or a non-empty list"),
    ("contains", "3", "scorer contains expects a string or a list of strings"),
    ("tool_call", "{tool: x}", "scorer tool_call expects nothing, a tool name, or {name: TOOL}"),
    ("open_ended", "[Paris]", "scorer open_ended expects nothing, or {contains: [strings]}"),
])
def test_battery_expected_of_the_wrong_type_is_refused_at_load(scorer: str, expected: str, words: str,
                                                                tmp_path: Path) -> None:
    battery = tmp_path / "mine.yaml"
    battery.write_text(f"name: mine\nscorer: {scorer}\ncases:\n  - {{prompt: hi, expected: HI}}\n"
                       f"  - prompt: yo\n    expected: {expected}\n", encoding="utf-8")
    if scorer in ("tool_call", "open_ended"):  # their first case's expected must be of their own shape
        battery.write_text(battery.read_text().replace("expected: HI", "expected: null"), encoding="utf-8")
    with pytest.raises(EvalsuiteError) as e:
        load_battery(battery)
    assert str(e.value).startswith(f"{battery}:6: cases[1].expected: {words}"), str(e.value)


def test_a_run_of_some_planned_cases_is_marked_partial() -> None:
    """What the runner records (the plugin test in test_plugin.py runs it through pytest -k): per battery, the cases
    planned (cases x columns) and the samples present, only for batteries that fell short."""
    from types import SimpleNamespace

    from evalsuite.probe.runner import _partial

    results = load_results(GOOD)
    columns = len(results.adapters)
    plan = SimpleNamespace(batteries=[SimpleNamespace(name="uppercase-echo", cases=[None] * 25),
                                      SimpleNamespace(name="runaway-turns", cases=[None] * 20)],
                           targets=[None] * columns)
    have = {b: sum(s.battery == b for s in results.samples) for b in ("uppercase-echo", "runaway-turns")}
    assert have == {"uppercase-echo": 20 * columns, "runaway-turns": 20 * columns}  # 20 cases per column in the file
    partial = _partial(plan, results.samples, "pytest --lf")  # type: ignore[arg-type]
    assert partial == {"batteries": {"uppercase-echo": {"planned": 25 * columns, "ran": 20 * columns}},
                       "selection": "pytest --lf"}
    plan.batteries.pop(0)
    assert _partial(plan, results.samples, "") is None  # type: ignore[arg-type]
