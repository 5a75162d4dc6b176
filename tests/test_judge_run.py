"""``evalsuite judge`` end to end: scripted judges through the engine registry (deterministic verdicts), the tiny
model as a real judge (its verdicts are noise; the pipeline's behaviour is what is checked), caching, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine, register
from report_support import load_factory

from evalsuite.judge.prompt import combine
from evalsuite.judge.run import JudgeRequest, run_judge
from evalsuite.probe.options import ProbeOptions
from evalsuite.results.io import load_results, write_results
from evalsuite.results.judgements import summarise

factory = load_factory()
TEN = "llama32-ten"


@pytest.fixture()
def results_file(tmp_path: Path) -> Path:
    path = tmp_path / "results.json"
    write_results(factory.make_results([("base", "base", 0.2), ("lora", "adapter", 0.9)], 0), path)
    return path


def _answers(path: Path, column: str) -> dict[str, str]:
    return {s.case: s.answer for s in load_results(path).samples_for(TEN, column)}


def _first_answer(messages: Any) -> str:
    text = messages[-1]["content"]
    shown = text.split("[Answer A]\n", 1)[1].split("\n\n[Answer B]", 1)[0]
    return "" if shown == "(empty)" else shown  # the prompt shows an empty answer as "(empty)"


def _second_answer(messages: Any) -> str:
    shown = messages[-1]["content"].split("[Answer B]\n", 1)[1].rsplit("\n\nWhich answer is better?", 1)[0]
    return "" if shown == "(empty)" else shown


def _judge(results: Path, judge: Path, script: Any, cache: Path, **options: Any) -> Any:
    register()
    FakeEngine.reset(script)
    opts = ProbeOptions(engine="fake", cache_dir=cache, device="cpu", **options)
    return run_judge(JudgeRequest(results, judge, "lora:base", [TEN], options=opts))


def test_scripted_judges_one_prefers_a_one_is_biased_one_answers_garbage(results_file: Path, tiny_base: Path,
                                                                         tmp_path: Path) -> None:
    lora, base = _answers(results_file, "lora"), _answers(results_file, "base")
    lora_first = {(lora[c], base[c]) for c in lora}  # (first shown, second shown) when lora's answer is first

    def prefers_lora(adapter: Any, messages: Any) -> str:
        return "Verdict: A" if (_first_answer(messages), _second_answer(messages)) in lora_first else "Verdict: B"

    scripts = {"prefers-a": prefers_lora, "biased": lambda *_: "I pick the first one. Verdict: A",
               "garbage": lambda *_: "lorem ipsum dolor"}
    summaries = {}
    for name, script in scripts.items():
        run = _judge(results_file, tiny_base, script, tmp_path / f"cache-{name}")
        (j,) = run.judgements
        summaries[name] = summarise(j)
        asked = [v for v in j.verdicts if v.reason != "identical"]
        assert asked and all(len(v.answers) == 2 for v in asked)
        assert all((v.verdict, v.reason) == combine(v.parsed) for v in asked)
        assert run.generated == 2 * len(asked) and FakeEngine.generated() == 2 * len(asked)
    n_asked = summaries["garbage"].n - summaries["garbage"].identical
    assert summaries["prefers-a"].a_wins == n_asked and summaries["prefers-a"].inconsistent == 0
    assert summaries["biased"].ties == summaries["biased"].n and summaries["biased"].inconsistent == n_asked
    assert summaries["biased"].decided == 0
    assert summaries["garbage"].unparseable == 2 * n_asked and summaries["garbage"].ties == summaries["garbage"].n
    # the last run's verdicts are in the file, once per (judge, pair, battery)
    written = load_results(results_file).judgements
    assert len(written) == 1 and written[0].judge == tiny_base.resolve().name
    assert summarise(written[0]) == summaries["garbage"]


def test_both_orders_are_asked_and_cached(results_file: Path, tiny_base: Path, tmp_path: Path) -> None:
    lora, base = _answers(results_file, "lora"), _answers(results_file, "base")
    first = _judge(results_file, tiny_base, lambda *_: "Verdict: tie", tmp_path / "cache")
    asked = [r for call in FakeEngine.built[0].calls for _, r in call]
    firsts = [_first_answer(r.messages) for r in asked]
    differing = [c for c in lora if lora[c].strip() != base[c].strip()]
    assert sorted(firsts) == sorted([lora[c] for c in differing] + [base[c] for c in differing])
    assert all("Which answer is better?" in r.messages[-1]["content"] for r in asked)
    again = _judge(results_file, tiny_base, lambda *_: "Verdict: B", tmp_path / "cache")
    assert (again.generated, again.cached) == (0, first.generated) and FakeEngine.generated() == 0
    assert again.judgements[0].verdicts == first.judgements[0].verdicts  # served from the cache, not re-asked


@pytest.mark.slow
def test_the_tiny_model_as_a_real_judge(results_file: Path, tiny_base: Path, tmp_path: Path) -> None:
    opts = ProbeOptions(cache_dir=tmp_path / "cache", device="cpu", max_new_tokens=12, batch_size=32)
    request = JudgeRequest(results_file, tiny_base, "lora:base", [TEN], options=opts)
    run = run_judge(request)
    (j,) = run.judgements
    asked = [v for v in j.verdicts if v.reason != "identical"]
    assert run.generated == 2 * len(asked) > 0 and run.cached == 0
    for v in asked:  # garbage verdicts, but every reply is kept, parsed or counted, and combined by the rule
        assert len(v.answers) == 2 and all(isinstance(a, str) for a in v.answers)
        assert all(p in ("a", "b", "tie", None) for p in v.parsed)
        assert (v.verdict, v.reason) == combine(v.parsed)
    s = summarise(j)
    assert s.a_wins + s.b_wins + s.ties == s.n == 10
    assert s.unparseable == sum(p is None for v in asked for p in v.parsed)
    again = run_judge(request)
    assert (again.generated, again.cached) == (0, run.generated)
    assert [v.answers for v in again.judgements[0].verdicts] == [v.answers for v in j.verdicts]


@pytest.mark.slow
def test_judge_cli_writes_verdicts_and_bad_input_is_one_line(results_file: Path, tiny_base: Path,
                                                             tmp_path: Path) -> None:
    env_cache = ["--max-new-tokens", "8", "--device", "cpu"]
    base = [sys.executable, "-m", "evalsuite.cli", "judge", str(results_file), "--judge", str(tiny_base)]
    done = subprocess.run([*base, "--pair", "lora:base", "--battery", TEN, *env_cache], capture_output=True,
                          text=True, timeout=900, env=_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert re.search(r"llama32-ten\s+lora \d+ · tie \d+ · base \d+", done.stdout)
    (judged,) = load_results(results_file).judgements_for(TEN)
    report = tmp_path / "report.html"
    shown = subprocess.run([sys.executable, "-m", "evalsuite.cli", "report", str(results_file), "-o", str(report)],
                           capture_output=True, text=True, timeout=300, env=_env(tmp_path))
    assert shown.returncode == 0, shown.stderr
    s = summarise(judged)
    assert f"Judged by {judged.judge}" in report.read_text() and f"lora {s.a_wins} · tie {s.ties}" in report.read_text()
    before = results_file.read_bytes()
    missing_rubric = ["--pair", "lora:base", "--rubric", str(tmp_path / "none.txt")]
    for args, message in [(["--pair", "lora:nope"], "no column 'nope' in the results (have: base, lora)"),
                          (["--pair", "lora"], "--pair: expected COLUMN_A:COLUMN_B, got 'lora'"),
                          (["--pair", "lora:base", "--battery", "nope"], "no battery 'nope' in the results"),
                          (["--pair", "lora:base", "--engine", "nope"], "--engine: unknown engine 'nope'"),
                          (["--pair", "lora:base", "--batch-size", "0"], "--batch-size: expected a positive integer"),
                          (missing_rubric, "none.txt: no such rubric file")]:
        bad = subprocess.run([*base, *args], capture_output=True, text=True, timeout=300, env=_env(tmp_path))
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert results_file.read_bytes() == before  # nothing of the user's is touched on bad input
    missing = subprocess.run([*base[:4], str(tmp_path / "none.json"), "--judge", str(tiny_base), "--pair", "a:b"],
                             capture_output=True, text=True, timeout=300, env=_env(tmp_path))
    assert missing.returncode == 2 and "none.json" in missing.stderr and "Traceback" not in missing.stderr
    nojudge = subprocess.run([*base[:5], "--judge", str(tmp_path), "--pair", "lora:base"], capture_output=True,
                             text=True, timeout=300, env=_env(tmp_path))
    assert nojudge.returncode == 2 and "not a model folder" in nojudge.stderr
    a_file = subprocess.run([*base[:5], "--judge", str(results_file), "--pair", "lora:base"], capture_output=True,
                            text=True, timeout=300, env=_env(tmp_path))
    assert a_file.returncode == 2 and "results.json: a file, not a model folder or run dir" in a_file.stderr


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "EVALSUITE_CACHE": str(tmp_path / "env-cache")}


def test_rubric_from_the_battery_or_a_file(results_file: Path, tiny_base: Path, tmp_path: Path) -> None:
    seen: list[str] = []

    def record(adapter: Any, messages: Any) -> str:
        seen.append(messages[-1]["content"])
        return "Verdict: A"

    rubric = tmp_path / "rubric.txt"
    rubric.write_text("Prefer the answer a ten-year-old understands.\n")
    register()
    FakeEngine.reset(record)
    opts = ProbeOptions(engine="fake", cache_dir=tmp_path / "c", device="cpu")
    run = run_judge(JudgeRequest(results_file, tiny_base, "lora:base", [TEN], rubric, opts))
    assert run.judgements[0].rubric == "Prefer the answer a ten-year-old understands."
    assert seen and all("a ten-year-old understands" in s for s in seen)
    data = json.loads(results_file.read_text())
    assert data["judgements"]["version"] == 1 and data["schema_version"] == 3  # issue 29: results v3 (not-run samples)
    assert replace(run.judgements[0]) == load_results(results_file).judgements[0]
