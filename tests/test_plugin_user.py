"""Users' own probe tests through the plugin (pytester): the ``probe_model`` fixture runs each test once per column,
shares the batteries' engine (one base load, counted) and generation cache, records verdicts as the ``user`` battery,
shows prompt/output/finish reason on failure; ``--lf`` re-runs only failures from the cache; pytest-xdist is refused.
Most runs use the fake engine (tests/fake_engine.py), which loads no model and counts what it generates."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fake_engine import MINI, FakeEngine, register

# imported before any pytester snapshot (numpy and torch cannot be imported twice): see test_plugin.py's warm_stack
import evalsuite.probe.runner
import evalsuite.probe.session
import evalsuite.probe.usertests  # noqa: F401

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "probe_tests" / "test_my_adapter.py"
USER_TESTS = """
from evalsuite.probe.asserts import assert_stops, assert_uppercase_of


def test_caps(probe_model):
    reply = probe_model.chat("hello", max_new_tokens=24)  # the mini battery's prompt and budget
    assert_uppercase_of(reply)
    assert_stops(reply)


def test_plain_assert(probe_model):
    [a, b] = probe_model.generate(["abc def", "xyz"], max_new_tokens=24)
    assert a.text == "ABC DEF" and b.text == "XYZ"
"""


@pytest.fixture
def fake(demo_adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> type[FakeEngine]:
    """The fake engine registered as ``fake``, its code path warmed outside pytester, its counters reset."""
    from evalsuite.probe.runner import ProbeOptions, plan_probes
    from evalsuite.probe.session import ProbeSession

    engine = register()
    battery = tmp_path_factory.mktemp("warm-user") / "mini.yaml"
    battery.write_text(MINI, encoding="utf-8")
    plan = plan_probes([demo_adapter], ProbeOptions(batteries=[str(battery)], engine="fake", device="cpu",
                                                    use_cache=False))
    ProbeSession(plan).models["demo"].chat("warm")
    engine.reset()
    return engine


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    (pytester.path / "mini.yaml").write_text(MINI, encoding="utf-8")
    pytester.makepyfile(test_user=USER_TESTS)
    pytester.makeini("[pytest]\n")
    monkeypatch.setenv("EVALSUITE_CACHE", str(pytester.path / "cache"))  # this project's own generation cache
    return pytester


def _fake_args(adapter: Path, *more: str) -> list[str]:
    return ["--adapter", str(adapter), "--battery", "mini.yaml", "--probe-engine", "fake", "--probe-device", "cpu",
            *more]


def test_user_tests_run_per_column_share_one_load_and_the_cache(project: pytest.Pytester, demo_adapter: Path,
                                                                fake: type[FakeEngine]) -> None:
    out = project.path / "r.json"
    result = project.runpytest("-m", "probes", "-v", *_fake_args(demo_adapter, "--probe-base", "--probe-out",
                                                                 str(out)))
    # the fake uppercases on adapter columns and echoes on the base: every base case fails
    result.assert_outcomes(passed=5, failed=5)
    result.stdout.fnmatch_lines(["*test_user.py::test_caps?base? FAILED*", "*test_user.py::test_caps?demo? PASSED*",
                                 "*test_user.py::test_plain_assert?demo? PASSED*"])
    # user tests ran first ("hello", "abc def", "xyz" per column); the battery's "hello" and "abc def" came from the
    # cache they filled, only "hellow world" was generated for it
    result.stdout.fnmatch_lines(["generated 8, from cache 4; base loads 1*"])
    assert len(fake.built) == 1 and fake.generated() == 8
    data = json.loads(out.read_text(encoding="utf-8"))
    user = {(s["case"], s["adapter"]): s for s in data["samples"] if s["battery"] == "user"}
    assert set(user) == {(c, a) for c in ("test_user.py::test_caps", "test_user.py::test_plain_assert")
                         for a in ("base", "demo")}
    mini = {(s["case"], s["adapter"]): s for s in data["samples"] if s["battery"] == "mini"}
    for column in ("base", "demo"):
        mine, battery = user[("test_user.py::test_caps", column)], mini[("hello", column)]
        assert (mine["output"], mine["finish_reason"], mine["tokens"]) == \
            (battery["output"], battery["finish_reason"], battery["tokens"])
    assert user[("test_user.py::test_caps", "demo")]["passed"] is True
    failed = user[("test_user.py::test_caps", "base")]
    assert (failed["passed"], failed["scorer"]["name"], failed["expected"]) == (False, "exact_match", "HELLO")
    assert user[("test_user.py::test_plain_assert", "base")]["details"]["error"].startswith("AssertionError")
    accuracy = {(m["adapter"], m["name"]): m["value"] for m in data["metrics"] if m["battery"] == "user"}
    assert accuracy == {("base", "accuracy"): 0.0, ("demo", "accuracy"): 1.0}


def test_the_plugin_records_what_the_whole_session_cost(project: pytest.Pytester, demo_adapter: Path,
                                                        fake: type[FakeEngine]) -> None:
    """``engine.session`` as ``evalsuite probe`` writes it, counting the user tests' generation and the batteries'."""
    import time

    from fake_engine import upper_echo

    from evalsuite.results.io import load_results

    pause = 0.05

    def slow(adapter: str | None, messages: object) -> str:
        time.sleep(pause)
        return upper_echo(adapter, messages)  # type: ignore[arg-type]

    fake.reset(slow)
    out = project.path / "r.json"
    result = project.runpytest("-m", "probes", *_fake_args(demo_adapter, "--probe-base", "--probe-out", str(out)))
    result.assert_outcomes(passed=5, failed=5)
    result.stdout.fnmatch_lines(["generated 8, from cache 4; base loads 1*"])  # 6 by user tests, 2 by the battery
    session = load_results(out).engine.settings["session"]
    assert session["version"] == 1 and session["peak_rss_bytes"] > 10 * 2**20 and session["peak_cuda_bytes"] is None
    assert session["generate_s"] >= pause * fake.generated() == pause * 8 and session["load_s"] >= 0


def test_user_failures_show_prompt_output_expected_and_finish_reason(project: pytest.Pytester, demo_adapter: Path,
                                                                    fake: type[FakeEngine]) -> None:
    result = project.runpytest(*_fake_args(demo_adapter, "--probe-base", "-k", "test_user and base"))
    result.assert_outcomes(failed=2, deselected=8)
    result.stdout.fnmatch_lines([  # an evalsuite assertion: the battery items' report
        "*ProbeAssertionError: user / base*",
        "*prompt:        'hello'*",
        "*output:        'hello'*",
        "*expected:      'HELLO'*",
        "*scorer:        exact_match*",
        "*finish reason: eos (*tokens)*",
    ])
    result.stdout.fnmatch_lines([  # a plain assert: the last reply under its own heading
        "*evalsuite: last reply*",
        "*user / base / case test_user.py::test_plain_assert*",
        "*prompt:        'xyz'*",
        "*output:        'xyz'*",
        "*finish reason: eos*",
    ])


def test_user_tests_gate_and_junit(project: pytest.Pytester, demo_adapter: Path, fake: type[FakeEngine]) -> None:
    xml = project.path / "junit.xml"
    result = project.runpytest(*_fake_args(demo_adapter, "-k", "test_user", f"--junitxml={xml}",
                                           "--gate", "user.accuracy >= 1.0"))
    result.assert_outcomes(passed=2, deselected=3)
    result.stdout.fnmatch_lines(["PASS user.accuracy >= 1 ?demo?*"])
    cases = {c.get("name"): c for c in ET.parse(xml).getroot().iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["test_caps[demo]"].iter("property")}
    assert props == {"adapter": "demo", "finish_reason": "eos", "output": "HELLO"}
    failing = project.runpytest(*_fake_args(demo_adapter, "--probe-base", "-k", "test_user",
                                            "--gate", "user.accuracy >= 1.0"))
    assert failing.ret == pytest.ExitCode.TESTS_FAILED
    failing.stdout.fnmatch_lines(["PASS user.accuracy >= 1 ?demo?*"])  # gates apply to adapters, not the base


WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def test_regression_gate_pairs_user_cases_across_runs(project: pytest.Pytester, demo_adapter: Path,
                                                      fake: type[FakeEngine]) -> None:
    """Recorded as a battery, user tests get the McNemar regression gate: the same test ids pair up across runs."""
    from fake_engine import last_user_turn

    project.makepyfile(test_words=f"""
        import pytest
        from evalsuite.probe.asserts import assert_uppercase_of

        @pytest.mark.parametrize("word", {WORDS!r})
        def test_caps(probe_model, word):
            assert_uppercase_of(probe_model.chat(word))
    """)
    baseline = project.path / "baseline.json"
    first = project.runpytest(*_fake_args(demo_adapter, "-k", "test_words", "--probe-out", str(baseline)))
    first.assert_outcomes(passed=10, deselected=5)
    cases = [s["case"] for s in json.loads(baseline.read_text(encoding="utf-8"))["samples"]]
    assert cases == [f"test_words.py::test_caps[{w}]" for w in WORDS]  # the column is not part of the case
    fake.reset(lambda adapter, messages: last_user_turn(messages))  # a "retrained" adapter that lost the skill
    second = project.runpytest(*_fake_args(demo_adapter, "-k", "test_words", "--probe-no-cache",
                                           "--gate-baseline", str(baseline), "--gate", "user.accuracy: -5%"))
    second.assert_outcomes(failed=10, deselected=5)
    second.stdout.fnmatch_lines(["FAIL user.accuracy: -5% ?demo vs baseline demo?: 0 vs baseline 1 (-1 on 10 paired "
                                 "cases)*and significant*exact McNemar, 10 pass->fail / 0 fail->pass*"])


def test_last_failed_reruns_only_failures_from_the_cache(project: pytest.Pytester, demo_adapter: Path,
                                                         fake: type[FakeEngine]) -> None:
    first = project.runpytest(*_fake_args(demo_adapter, "--probe-base"))
    first.assert_outcomes(passed=5, failed=5)
    first.stdout.fnmatch_lines(["generated 8, from cache 4; base loads 1*"])
    fake.reset()
    again = project.runpytest("-v", "--lf", *_fake_args(demo_adapter, "--probe-base"))
    again.assert_outcomes(failed=5, deselected=3)  # only the base column's cases, which failed (the demo user
    # tests are left out at collection, its battery items deselected)
    again.stdout.fnmatch_lines(["generated 0, from cache 6; base loads 0*"])  # 3 battery items + 3 chats
    assert fake.built == [] and fake.generated() == 0


def test_probe_model_without_adapter_skips(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*probe_model: no model to probe; pass --adapter RUN_DIR*"])
    listing = pytester.runpytest("--fixtures").stdout.str()  # a new user finds it where pytest lists fixtures
    assert "probe_model [session scope]" in listing and "One column to chat with" in listing


def test_xdist_workers_are_refused_with_one_message(project: pytest.Pytester, demo_adapter: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xdist")
    result = project.runpytest_subprocess("-n", "2", "--adapter", str(demo_adapter), "--battery", "mini.yaml",
                                          timeout=300)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: evalsuite: --adapter does not run under pytest-xdist (-n)*"])
    assert "Traceback" not in result.stderr.str()
    assert not (project.path / "cache").exists()  # refused before anything was generated
    plain = project.runpytest_subprocess("-n", "2", timeout=300)  # without --adapter the plugin is inert: fine
    assert plain.ret == pytest.ExitCode.OK
    plain.stdout.fnmatch_lines(["*2 skipped*"])
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")  # a worker started some other way refuses too
    worker = project.runpytest("--adapter", str(demo_adapter), "--battery", "mini.yaml")
    assert worker.ret == pytest.ExitCode.USAGE_ERROR


def test_readme_shows_the_example_file_as_shipped() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- probe-example:start -->\n```python\n")[1].split("```\n<!-- probe-example:end -->")[0]
    assert block == EXAMPLE.read_text(encoding="utf-8")


@pytest.mark.slow
def test_example_file_runs_on_the_tiny_model_beside_the_batteries(pytester: pytest.Pytester,
                                                                  demo_adapter: Path) -> None:
    """The README's example, as shipped, on the real hf engine: passes on the demo adapter, one base load for it
    and a battery together, and its chats return exactly what the battery items got for the same prompt."""
    shutil.copy(EXAMPLE, pytester.path / EXAMPLE.name)
    (pytester.path / "mini.yaml").write_text(MINI, encoding="utf-8")
    pytester.makeini("[pytest]\n")
    out = pytester.path / "r.json"
    result = pytester.runpytest_subprocess("-m", "probes", "--adapter", str(demo_adapter), "--battery", "mini.yaml",
                                           "--probe-device", "cpu", "--probe-no-cache", "--probe-out", str(out),
                                           timeout=600)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*base loads 1*"])
    data = json.loads(out.read_text(encoding="utf-8"))
    outputs = {(s["battery"], s["prompt"]): (s["output"], s["finish_reason"], s["tokens"]) for s in data["samples"]}
    shared = [p for b, p in outputs if b == "user" and ("mini", p) in outputs]
    assert shared, "the example should chat a prompt the mini battery also has"
    for prompt in shared:
        assert outputs[("user", prompt)] == outputs[("mini", prompt)]
    assert all(s["passed"] for s in data["samples"])



RECORDED = """
import pytest


def test_a_chats(probe_model):
    assert probe_model.chat("hello", max_new_tokens=24).text.lower() == "hello"


def test_b_never_chats(probe_model):
    assert probe_model.name


def test_c_skips_after_chatting(probe_model):
    probe_model.chat("abc def", max_new_tokens=24)
    pytest.skip("not on this column")


def test_d_fails_without_chatting(probe_model):
    assert probe_model.name == "nobody"
"""


def test_only_tests_that_chatted_and_ran_to_a_verdict_are_recorded(project: pytest.Pytester, tiny_base: Path) -> None:
    """A skipped test is no verdict (not a failure); a test that never chats has no reply of its own, and must not
    be filed under the reply of the test before it. The tiny base probed as a merged model: nothing to train."""
    from evalsuite.probe.runner import ProbeOptions, plan_probes
    from evalsuite.probe.session import ProbeSession

    fake = register()
    plan = plan_probes([tiny_base], ProbeOptions(batteries=[str(project.path / "mini.yaml")], engine="fake",
                                                 device="cpu", use_cache=False))
    (column,) = ProbeSession(plan).models  # the fake's code path warmed outside pytester
    fake.reset()
    project.makepyfile(test_rec=RECORDED)
    out = project.path / "r.json"
    result = project.runpytest(*_fake_args(tiny_base, "-k", "test_rec", "--probe-out", str(out)))
    result.assert_outcomes(passed=2, skipped=1, failed=1, deselected=5)
    user = [s for s in json.loads(out.read_text(encoding="utf-8"))["samples"] if s["battery"] == "user"]
    assert [(s["case"], s["adapter"], s["passed"], s["output"].lower()) for s in user] == [
        ("test_rec.py::test_a_chats", column, True, "hello")]
