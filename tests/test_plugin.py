"""The pytest plugin, through pytester: inert without --adapter, collection and ids, -m probes, two adapters in one
run, failure reports, JUnit XML, gates at session end, exit codes; with the fake engine (tests/fake_engine.py): gates
checked before anything generates, and the options new to the plugin reaching the runner."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fake_engine import MINI, FakeEngine, register

import evalsuite.probe.runner  # noqa: F401  (numpy, imported before any pytester snapshot: see warm_stack)

pytest_plugins = ["pytester"]

ALWAYS = """\
name: always
scorer: contains
max_new_tokens: 8
cases:
  - {prompt: hi, expected: []}
  - {prompt: ok, expected: []}
"""


@pytest.fixture(scope="session")
def warm_stack(demo_adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the probe stack once in this process. pytester's in-process runs drop modules first imported inside
    them, and C extensions (numpy, torch) cannot be imported twice, so everything is imported out here first."""
    from evalsuite.probe.runner import ProbeOptions, execute, plan_probes

    battery = tmp_path_factory.mktemp("warm") / "always.yaml"
    battery.write_text(ALWAYS, encoding="utf-8")
    execute(plan_probes([demo_adapter], ProbeOptions(batteries=[str(battery)], include_base=True,
                                                     use_cache=False)))
    return demo_adapter


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    (pytester.path / "mini.yaml").write_text(MINI, encoding="utf-8")
    (pytester.path / "always.yaml").write_text(ALWAYS, encoding="utf-8")
    pytester.makeini("[pytest]\n")  # pin rootdir to the project, whatever the --adapter paths are
    return pytester


def test_inert_without_adapter_imports_no_torch(project: pytest.Pytester) -> None:
    project.makepyfile(test_light="""
        import sys

        def test_light(request):
            assert "torch" not in sys.modules
            assert "transformers" not in sys.modules
            assert "evalsuite.probe.runner" not in sys.modules
            assert request.config.getoption("adapter") == []
    """)
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert "evalsuite probes" not in result.stdout.str()
    help_text = project.runpytest_subprocess("--help").stdout.str()
    assert "evalsuite probes (prompt batteries for LoRA adapters)" in help_text
    for option in ("--adapter=DIR", "--probe-base", "--battery=NAME", "--probe-out=FILE", "--gate=EXPR"):
        assert option in help_text
    markers = project.runpytest_subprocess("--markers").stdout.str()
    assert "@pytest.mark.probes: probe battery cases" in markers


@pytest.mark.slow
def test_collection_ids_and_marker_selection(project: pytest.Pytester, warm_stack: Path) -> None:
    demo_adapter = warm_stack
    result = project.runpytest("--co", "-q", "-m", "probes", "--adapter", str(demo_adapter), "--probe-base",
                               "--battery", "mini.yaml")
    out = result.stdout.str()
    for column in ("demo", "base"):
        for case in ("hello", "abc-def", "hellow-world"):
            assert f"probes/mini::mini[{column}-{case}]" in out
    assert "test_plain" not in out
    result.stdout.fnmatch_lines(["6/7 tests collected (1 deselected)*"])
    only_plain = project.runpytest("-m", "not probes", "--adapter", str(demo_adapter), "--battery", "mini.yaml")
    only_plain.assert_outcomes(passed=1, deselected=3)
    assert "evalsuite probes" not in only_plain.stdout.str()  # nothing generated when no probe item runs


@pytest.mark.slow
def test_failures_show_prompt_output_expected_scorer_and_finish_reason(project: pytest.Pytester,
                                                                       warm_stack: Path) -> None:
    demo_adapter = warm_stack
    result = project.runpytest("-m", "probes", "--adapter", str(demo_adapter), "--probe-base",
                               "--battery", "mini.yaml", "-k", "base")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=3, deselected=4)  # the base echoes; it never uppercases unprompted
    result.stdout.fnmatch_lines([
        "*mini / base / case hello*",
        "*prompt:        'hello'*",
        "*output:        'hello'*",
        "*expected:      'HELLO'*",
        "*scorer:        exact_match*",
        "*finish reason: eos (*tokens)*",
    ])
    result.stdout.fnmatch_lines(["*evalsuite probes*", "mini*base*0/3*"])


@pytest.mark.slow
def test_two_adapters_in_one_run_write_one_results_file(project: pytest.Pytester, warm_stack: Path,
                                                        leaky_adapter: Path) -> None:
    demo_adapter = warm_stack
    out = project.path / "results.json"
    result = project.runpytest("-m", "probes", "--adapter", str(demo_adapter), "--adapter", str(leaky_adapter),
                               "--battery", "always.yaml", "--probe-out", str(out))
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=4, deselected=1)
    from evalsuite.results.io import load_results

    results = load_results(out)
    assert [a.name for a in results.adapters] == ["demo", "leaky"]
    assert {(s.adapter, s.case) for s in results.samples} == {(a, c) for a in ("demo", "leaky") for c in ("hi", "ok")}
    metric = results.metric("always", "leaky", "accuracy")
    assert metric is not None and metric.value == 1.0


@pytest.mark.slow
def test_junit_names_properties_and_gates(project: pytest.Pytester, warm_stack: Path) -> None:
    demo_adapter = warm_stack
    xml = project.path / "junit.xml"
    result = project.runpytest("-m", "probes", "--adapter", str(demo_adapter), "--probe-base",
                               "--battery", "always.yaml", "--battery", "mini.yaml", "-k", "always or base",
                               f"--junitxml={xml}", "--gate", "always.accuracy < 0.5")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the base fails mini, and the gate fails on "always"
    result.stdout.fnmatch_lines(["*evalsuite gates*", "FAIL always.accuracy < 0.5 ?demo?: 1 *violates*",
                                 "gates: 0 passed, 1 failed"])
    root = ET.parse(xml).getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["always[demo-hi]"].get("classname") == "probes.always"
    failure = cases["mini[base-hello]"].find("failure")
    assert failure is not None and "prompt:        'hello'" in str(failure.get("message"))
    props = {p.get("name"): p.get("value") for p in cases["always[demo-hi]"].iter("property")}
    assert props["finish_reason"] in ("eos", "max-tokens", "new-turn") and props["adapter"] == "demo"
    suite_props = {p.get("name"): p.get("value") for p in root.iter("property")
                   if str(p.get("name")).startswith("evalsuite_gates")}
    assert suite_props["evalsuite_gates_passed"] == "false"
    assert "FAIL always.accuracy < 0.5" in str(suite_props["evalsuite_gates"])


@pytest.mark.slow
def test_gate_failure_alone_fails_the_session_and_passing_gate_passes(project: pytest.Pytester,
                                                                      warm_stack: Path) -> None:
    demo_adapter = warm_stack
    args = ["-m", "probes", "--adapter", str(demo_adapter), "--battery", "always.yaml"]
    failing = project.runpytest(*args, "--gate", "always.accuracy < 0.5")
    failing.assert_outcomes(passed=2, deselected=1)
    assert failing.ret == pytest.ExitCode.TESTS_FAILED
    project.makepyprojecttoml('[tool.evalsuite]\ngates = ["always.accuracy >= 1.0"]\n')
    passing = project.runpytest(*args)
    assert passing.ret == pytest.ExitCode.OK
    passing.stdout.fnmatch_lines(["PASS always.accuracy >= 1 ?demo?*", "gates: 1 passed, 0 failed"])


def test_bad_adapter_dir_is_a_usage_error(project: pytest.Pytester) -> None:
    result = project.runpytest("-m", "probes", "--adapter", str(project.path / "missing-run"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: evalsuite: *missing-run: no such run dir, adapter or model folder"])
    (project.path / "run").mkdir()
    result = project.runpytest("--adapter", str(project.path / "run"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: evalsuite: *run: nothing to probe: *(missing adapter_model.safetensors: "
                                  "incomplete run dir?)"])


@pytest.mark.slow
def test_only_selected_items_are_generated(project: pytest.Pytester, warm_stack: Path) -> None:
    demo_adapter = warm_stack
    out = project.path / "r.json"
    result = project.runpytest("-m", "probes", "--adapter", str(demo_adapter), "--battery", "mini.yaml",
                               "-k", "hello and not hellow", "--probe-out", str(out), "--probe-no-cache")
    result.assert_outcomes(passed=1, deselected=3)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [s["case"] for s in data["samples"]] == ["hello"]
    assert data["engine"]["generated"] == 1



def test_a_selection_writes_a_partial_results_file_that_gate_refuses(project: pytest.Pytester,
                                                                     warm_stack: Path) -> None:
    """Issue 31: `-k` (like `--lf`) runs some of the planned cases; the results file says so, and `evalsuite gate`
    does not take its numbers for the full run's."""
    from cli_helpers import run_cli

    demo_adapter = warm_stack
    out = project.path / "r.json"
    result = project.runpytest("-m", "probes", "--adapter", str(demo_adapter), "--battery", "mini.yaml",
                               "--battery", "always.yaml", "-k", "mini and hello and not hellow", "--probe-out",
                               str(out))
    result.assert_outcomes(passed=1, deselected=5)  # 4 probe cases + the project's test_plain
    data = json.loads(out.read_text(encoding="utf-8"))
    # mini: 3 cases x 1 column planned, 1 ran; always: 2 planned, none ran.
    assert data["partial"]["batteries"] == {"mini": {"planned": 3, "ran": 1}, "always": {"planned": 2, "ran": 0}}
    assert "-k 'mini and hello and not hellow'" in data["partial"]["selection"]
    done = run_cli("gate", str(out), "--gate", "mini.accuracy >= 0", timeout=120)
    assert done.returncode == 2 and "battery mini ran 1 of its 3 planned cases" in done.stderr, done.stderr
    done = run_cli("gate", str(out), "--gate", "mini.accuracy >= 0", "--accept-partial", timeout=120)
    assert done.returncode == 0, done.stderr
    # Every case selected: no partial record.
    result = project.runpytest("-m", "probes", "--adapter", str(demo_adapter), "--battery", "mini.yaml",
                               "--probe-out", str(out))
    assert "partial" not in json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture
def fake_engine(demo_adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> type[FakeEngine]:
    """The fake engine registered as ``fake``, its counters reset, its path warmed outside pytester (see warm_stack):
    plugin runs through it load no model."""
    from evalsuite.probe.runner import ProbeOptions, execute, plan_probes

    engine = register()
    battery = tmp_path_factory.mktemp("warm-fake") / "always.yaml"
    battery.write_text(ALWAYS, encoding="utf-8")
    execute(plan_probes([demo_adapter], ProbeOptions(batteries=[str(battery)], engine="fake", device="cpu",
                                                     use_cache=False)))
    engine.reset()
    return engine


def test_malformed_gate_is_a_usage_error_before_anything_generates(project: pytest.Pytester, demo_adapter: Path,
                                                                   fake_engine: type[FakeEngine]) -> None:
    args = ["-m", "probes", "--adapter", str(demo_adapter), "--battery", "always.yaml", "--probe-engine", "fake",
            "--probe-device", "cpu", "--probe-no-cache"]
    result = project.runpytest(*args, "--gate", "always.accuracy >>= 0.5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: evalsuite: --gate*always.accuracy >>= 0.5*"])
    assert fake_engine.built == [] and fake_engine.generated() == 0
    project.makepyprojecttoml('[tool.evalsuite]\ngates = ["always.accuracy >= often"]\n')  # declared ones too
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: evalsuite: *pyproject.toml: tool.evalsuite.gates[[]0[]]*"])
    assert fake_engine.generated() == 0
    project.makepyprojecttoml('[tool.evalsuite]\ngates = ["always.accuracy >= 0.5"]\n')  # the control: it generates
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.OK
    assert fake_engine.generated() == 2
    result.stdout.fnmatch_lines(["PASS always.accuracy >= 0.5 ?demo?*"])


def test_options_new_to_the_plugin_reach_the_runner(project: pytest.Pytester, demo_adapter: Path,
                                                    fake_engine: type[FakeEngine]) -> None:
    out = project.path / "r.json"
    result = project.runpytest("-m", "probes", "--adapter", str(demo_adapter), "--battery", "mini.yaml",
                               "--probe-engine", "fake", "--probe-device", "cpu", "--probe-seed", "7",
                               "--probe-max-batch-seconds", "0", "--probe-trust-remote-code",
                               "--probe-tensor-parallel-size", "2", "--probe-no-cache", "--probe-out", str(out))
    result.assert_outcomes(passed=3, deselected=1)  # the fake uppercases on adapter columns
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["engine"]["name"] == "fake" and data["engine"]["seed"] == 7
    assert data["engine"]["max_batch_seconds"] is None  # 0: no cap
    [engine] = fake_engine.built
    assert (engine.spec.seed, engine.spec.trust_remote_code, engine.spec.tensor_parallel_size) == (7, True, 2)
