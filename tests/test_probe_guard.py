"""What a run may cost (evalsuite.probe.guard), driven through the runner with the fake engine (tests/fake_engine.py),
which batches, sleeps and runs out of memory on request: a slow engine is never cut and gives the same outputs as a
fast one; a stuck one is stopped, its samples are ``not-run`` (no verdict, in no metric, never cached) and every
surface says so and exits 2, naming the option; a transient stall is retried in smaller batches; a batch out of
memory is split, nothing lost."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli_helpers import call_main
from fake_engine import MINI, FakeEngine, Messages, last_user_turn, no_delay, register

from evalsuite.errors import EvalsuiteError
from evalsuite.probe.runner import ProbeOptions, execute, plan_probes, summary_lines
from evalsuite.results.io import load_results, write_results
from evalsuite.results.schema import NOT_RUN

pytest_plugins = ["pytester"]

STALL = 1.5  # --max-batch-seconds in these tests: a step slower than this is a stall (slack for a loaded machine)


def upper(adapter: str | None, messages: Messages) -> str:
    """The column's skill: every answer right (a merged model folder is the column: no adapter name)."""
    return last_user_turn(messages).upper()


@pytest.fixture
def fake() -> type[FakeEngine]:
    FakeEngine.reset(upper)
    return register()


@pytest.fixture
def model(tiny_base: Path) -> Path:
    """The column: the tiny base as a merged model folder (the fake engine loads no weights)."""
    return tiny_base


def options(battery: Path, tmp: Path, **kw: object) -> ProbeOptions:
    kw = {"use_cache": False, "max_batch_seconds": STALL, **kw}
    return ProbeOptions(batteries=[str(battery)], engine="fake", device="cpu", cache_dir=tmp / "cache",
                        **kw)  # type: ignore[arg-type]


def verdicts(run: object) -> dict[tuple[str, str], tuple[str, str, bool | None]]:
    return {(s.adapter, s.case): (s.output, s.finish_reason, s.passed) for s in run.results.samples}  # type: ignore[attr-defined]


def test_a_slow_engine_is_never_cut_and_gives_the_same_outputs(fake: type[FakeEngine], model: Path,
                                                               mini: Path, tmp_path: Path) -> None:
    fast = execute(plan_probes([model], options(mini, tmp_path)))
    slept: list[float] = []

    def slow(batch: int, step: int) -> float:
        slept.append(STALL / 5)
        return STALL / 5

    fake.reset(upper, delay=slow)
    t0 = time.perf_counter()
    run = execute(plan_probes([model], options(mini, tmp_path)))
    assert time.perf_counter() - t0 > 2 * STALL and sum(slept) > 2 * STALL  # a per-batch wall cut would have fired
    assert verdicts(run) == verdicts(fast)
    assert not run.results.not_run() and fake.built[0].batches == [3]  # one batch, never retried
    assert verdicts(run)["tiny-base", "hellow-world"] == ("HELLOW WORLD", "eos", True)


def stuck_after_first_token(batch: int, step: int) -> float:
    return 3 * STALL if step >= 1 else 0.0


def test_a_stuck_engine_is_stopped_and_its_samples_are_not_run(fake: type[FakeEngine], model: Path,
                                                               mini: Path, tmp_path: Path) -> None:
    fake.reset(upper, delay=stuck_after_first_token)
    run = execute(plan_probes([model], options(mini, tmp_path, use_cache=True)))
    samples = run.results.samples
    assert len(samples) == 3 and all(s.finish_reason == NOT_RUN for s in samples)  # nothing lost, nothing scored
    assert all(s.passed is None and s.score is None and s.output == "" for s in samples)
    assert all("--max-batch-seconds" in s.details["not_run"] for s in samples)
    assert fake.built[0].batches == [3, 1, 1, 1]  # stalled, retried in smaller batches, stalled again: stuck
    assert run.results.metrics == []  # no sample ran: no metric row
    assert run.results.engine.settings["not_run"] == {samples[0].details["not_run"]: 3}
    lines = summary_lines(run.results)
    assert lines[-1].startswith("NOT RUN: 3 sample(s)") and "--max-batch-seconds" in lines[-1]
    assert "0/0" in lines[0] and "+3 not run" in lines[0]
    fake.reset(upper)  # healthy again: nothing was cached, so everything is generated now
    again = execute(plan_probes([model], options(mini, tmp_path, use_cache=True)))
    assert (again.generated, again.cached) == (3, 0) and not again.results.not_run()


def test_a_transient_stall_is_retried_in_smaller_batches(fake: type[FakeEngine], model: Path, mini: Path,
                                                         tmp_path: Path) -> None:
    fast = execute(plan_probes([model], options(mini, tmp_path)))
    fake.reset(upper, delay=lambda batch, step: 3 * STALL if (batch, step) == (0, 2) else 0.0)
    run = execute(plan_probes([model], options(mini, tmp_path)))
    assert verdicts(run) == verdicts(fast) and not run.results.not_run()
    batches = fake.built[0].batches
    assert batches[0] == 3 and all(n < 3 for n in batches[1:]) and sum(batches[1:]) == 3


def test_only_the_unfinished_rows_of_a_stalled_batch_are_not_run(fake: type[FakeEngine], model: Path,
                                                                 mini: Path, tmp_path: Path) -> None:
    """``hello`` (6 tokens with its stop) is done before the stall at step 6; the longer answers are not."""
    fake.reset(upper, delay=lambda batch, step: 3 * STALL if step >= 6 else 0.0)
    run = execute(plan_probes([model], options(mini, tmp_path)))
    by_case = {s.case: s for s in run.results.samples}
    assert by_case["hello"].finish_reason == "eos" and by_case["hello"].passed is True
    assert {k for k, s in by_case.items() if not s.ran} == {"abc-def", "hellow-world"}
    accuracy = {m.adapter: (m.value, m.n) for m in run.results.metrics if m.name == "accuracy"}
    assert accuracy == {"tiny-base": (1.0, 1)}  # over the samples that ran only


def test_out_of_memory_splits_the_batch_and_loses_nothing(fake: type[FakeEngine], model: Path, mini: Path,
                                                          tmp_path: Path) -> None:
    fast = execute(plan_probes([model], options(mini, tmp_path)))
    fake.reset(upper, oom_above=1)
    run = execute(plan_probes([model], options(mini, tmp_path)))
    assert verdicts(run) == verdicts(fast) and not run.results.not_run()
    engine = fake.built[0]
    assert engine.ooms == [3, 2] and engine.batches == [1, 1, 1]  # 3 -> 2 + 1 -> 1 + 1 + 1
    fake.reset(upper, oom_above=0)  # not even one prompt fits: not run, with the reason; nothing crashes
    none = execute(plan_probes([model], options(mini, tmp_path)))
    assert all(s.finish_reason == NOT_RUN and "out of memory" in s.details["not_run"] for s in none.results.samples)


def test_results_files_keep_not_run_samples_without_a_verdict(fake: type[FakeEngine], model: Path,
                                                              mini: Path, tmp_path: Path) -> None:
    fake.reset(upper, delay=lambda batch, step: 3 * STALL if step >= 6 else 0.0)
    run = execute(plan_probes([model], options(mini, tmp_path)))
    out = tmp_path / "r.json"
    write_results(run.results, out)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["schema_version"] == 3
    stopped = [s for s in data["samples"] if s["finish_reason"] == "not-run"]
    assert len(stopped) == 2 and all(s["passed"] is None and s["score"] is None for s in stopped)
    assert [s.case for s in load_results(out).not_run()] == [s["case"] for s in stopped]
    stopped[0]["passed"] = True  # a verdict on a sample that was not run is a lie: refused, named
    out.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(EvalsuiteError, match=r"samples\[\d+\]\.passed: expected null for a not-run sample"):
        load_results(out)


def test_probe_and_gate_exit_2_naming_the_option(fake: type[FakeEngine], model: Path, mini: Path,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake.reset(upper, delay=stuck_after_first_token)
    out = tmp_path / "r.json"
    common = [model, "--battery", mini, "--engine", "fake", "--device", "cpu", "--no-cache"]
    assert call_main(["probe", *common, "--max-batch-seconds", str(STALL), "--out", out]) == 2
    printed = capsys.readouterr().out
    assert "NOT RUN: 3 sample(s)" in printed and "--max-batch-seconds" in printed
    assert call_main(["gate", out, "--gate", "mini.accuracy >= 0"]) == 2  # cannot pass by accident
    printed = capsys.readouterr().out
    assert "NOT RUN: 3 sample(s) of tiny-base (mini) have no verdict" in printed
    fake.reset(upper, delay=no_delay)  # the control: the same commands on a healthy engine
    assert call_main(["probe", *common, "--out", out]) == 0
    assert call_main(["gate", out, "--gate", "mini.accuracy >= 0"]) == 0


def test_the_report_shows_not_run_samples_apart_from_failures(fake: type[FakeEngine], model: Path,
                                                              mini: Path, tmp_path: Path) -> None:
    from evalsuite.report.build import build_model
    from evalsuite.report.render import render_html, render_markdown

    fake.reset(upper, delay=lambda batch, step: 3 * STALL if step >= 6 else 0.0)
    out = tmp_path / "r.json"
    write_results(execute(plan_probes([model], options(mini, tmp_path))).results, out)
    report = build_model([out], with_plots=False)
    [view] = report.batteries
    assert (view.n_failed, view.n_not_run) == (0, 2)  # not run is not a failure
    assert len(report.not_run) == 1 and "tiny-base: 2 sample(s) not run (mini 2): the engine gave no new token" \
        in report.not_run[0]
    html, md = render_html(report), render_markdown(report)
    assert html.count('class="badge notrun"') == 2 and "<strong>Not run</strong>" in html
    assert "**Not run**" in md and "0 with a failure, 2 not run" in md


@pytest.fixture
def project(pytester: pytest.Pytester, fake: type[FakeEngine], model: Path, mini: Path,
            tmp_path: Path) -> pytest.Pytester:
    """A pytest project probing the tiny base through the fake engine; the stack is imported out here first
    (pytester's in-process runs cannot import C extensions a second time)."""
    execute(plan_probes([model], options(mini, tmp_path)))
    fake.reset(upper)
    (pytester.path / "mini.yaml").write_text(MINI, encoding="utf-8")
    pytester.makepyfile(test_chat="""
        def test_chat(probe_model):
            assert probe_model.chat("hello").text == "HELLO"
    """)
    pytester.makeini("[pytest]\n")
    return pytester


def test_pytest_reports_not_run_cases_as_skips_in_junit_and_exits_2(project: pytest.Pytester,
                                                                     fake: type[FakeEngine],
                                                                     model: Path) -> None:
    fake.reset(upper, delay=lambda batch, step: 3 * STALL if step >= 6 else 0.0)  # hello finishes; the rest stall
    xml = project.path / "junit.xml"
    result = project.runpytest("-m", "probes", "--adapter", str(model), "--battery", "mini.yaml",
                               "--probe-engine", "fake", "--probe-device", "cpu", "--probe-no-cache",
                               "--probe-max-batch-seconds", str(STALL), f"--junitxml={xml}",
                               "--probe-out", str(project.path / "r.json"))
    assert result.ret == 2
    result.assert_outcomes(passed=2, skipped=2)  # mini[tiny-base-hello] and the user test's hello; two not run
    result.stdout.fnmatch_lines(["*NOT RUN: 2 sample(s) were not generated to the end*--probe-max-batch-seconds*"])
    text = xml.read_text(encoding="utf-8")
    assert text.count("<skipped") == 2 and "not run: the engine gave no new token" in text
    assert 'name="evalsuite_not_run" value="2"' in text and "--max-batch-seconds" in text
    data = json.loads((project.path / "r.json").read_text(encoding="utf-8"))
    assert sorted(s["case"] for s in data["samples"] if s["passed"] is None) == ["abc-def", "hellow-world"]
