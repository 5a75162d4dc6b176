"""pytest plugin (entry point ``pytest11``): probe batteries as pytest items.

    pytest -m probes --adapter runs/qwen05 [--adapter DIR ...] [--probe-base] [--battery NAME ...]
           [--probe-out results.json] [--gate EXPR ...] [--gate-baseline FILE]

Thin hooks over the pytest-free runner (:mod:`evalsuite.probe.runner`). Without ``--adapter`` the plugin only registers
its options (from :mod:`evalsuite.probe.options`, which imports nothing heavy) and marker: never torch. With it, every
(battery, column, case) becomes an item named ``uppercase-echo[qwen05-hellow-world]`` carrying the ``probes``
marker. The options (one table with ``evalsuite probe``: :mod:`evalsuite.probe.options`) and the gates are
validated at configure time, run dirs and batteries at collection: each problem is a usage error before any model
loads. The first probe item that runs generates everything selected in one batched pass (base loaded once,
adapters attached); each item then asserts its own sample and a failure shows prompt, output, expected value, scorer
and finish reason. Users' own tests take the ``probe_model`` fixture (one column per ``--adapter``, see
:mod:`evalsuite.probe.session`), share the batteries' engine and cache (one :class:`ProbeSession` per pytest session),
and are recorded as the ``user`` battery (:mod:`evalsuite.probe.usertests`). At session end the results file is
written and the gates (``[tool.evalsuite]`` in pyproject.toml,
``--gate``) are applied: their lines go to the terminal summary and the JUnit XML, and a failed gate fails the
session. A case the model was not let to answer (the stall guard stopped a stuck engine: finish reason ``not-run``)
has no verdict: its item is skipped with the reason, the summary and the JUnit XML (``evalsuite_not_run``) count
them, and the session exits 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from evalsuite.probe.plugin_nodes import MARKER, BatteryNode, ProbeFailure, UnavailableBattery, selection

if TYPE_CHECKING:
    from evalsuite.gates.declared import ResolvedGates
    from evalsuite.probe.options import ProbeOptions
    from evalsuite.probe.runner import ProbePlan, ProbeRun
    from evalsuite.probe.session import ProbeModel, ProbeSession
    from evalsuite.results.schema import Results, Sample



@dataclass
class _State:
    options: ProbeOptions
    out: Path | None
    gates: ResolvedGates  # parsed at configure: a malformed gate is a usage error before any weights load
    baseline: Results | None
    run_dirs: list[str | Path] = field(default_factory=list)  # a URL stays a string (an endpoint column)
    plan: ProbePlan | None = None
    probe: ProbeSession | None = None  # built when the first probe item or user test needs the model
    run: ProbeRun | None = None
    samples: dict[tuple[str, str, str], Sample] = field(default_factory=dict)
    user_samples: list[Sample] = field(default_factory=list)  # users' own tests, the `user` battery
    results: Results | None = None
    gate_lines: list[str] = field(default_factory=list)
    gates_passed: bool = True
    not_run: list[str] = field(default_factory=list)  # ``NOT RUN: ...`` lines: samples with no verdict


STATE = pytest.StashKey[_State]()
NOT_RUN_EXIT = 2  # some sample was not run (the stall guard stopped a stuck engine): as `evalsuite probe` exits


def pytest_addoption(parser: pytest.Parser) -> None:
    from evalsuite.probe.options import add_options

    group = parser.getgroup("evalsuite", "evalsuite probes (prompt batteries for LoRA adapters)")
    add = group.addoption
    add("--adapter", action="append", default=[], metavar="DIR",
        help="what to probe (repeatable, may be mixed): a run dir, PEFT adapter folder, trainer output folder, merged "
             "model, cached hub adapter id, MODEL.gguf (run by llama.cpp) or http(s)://HOST:PORT/v1 (an "
             "OpenAI-compatible server); without it the plugin is inert")
    add_options(add, "plugin")  # the options `evalsuite probe` has, from one table (evalsuite.probe.options)
    add("--probe-out", metavar="FILE", help="write the results JSON here (atomically)")
    add("--gate", action="append", default=[], metavar="EXPR", help="quality gate applied at session end")
    add("--gate-baseline", metavar="FILE", help="baseline results for regression gates")
    add("--gate-alpha", type=float, metavar="P", help="significance level of regression gates (default 0.05)")
    add("--gate-config", metavar="FILE", help="read declared gates from this config YAML (default: pyproject)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: probe battery cases and tests using the probe_model fixture")
    adapters = config.getoption("adapter")
    if not adapters:
        return
    _refuse_xdist(config)
    from evalsuite.errors import EvalsuiteError
    from evalsuite.probe.cli import column_arg

    try:
        config.stash[STATE] = _configured_state(config, [column_arg(a) for a in adapters])
    except EvalsuiteError as e:
        raise pytest.UsageError(f"evalsuite: {e}") from None


def _refuse_xdist(config: pytest.Config) -> None:
    """pytest-xdist would load the base once per worker and write one results file per worker; the engine already
    batches every prompt of every column in one pass, so probing refuses ``-n`` with one message instead."""
    import os

    if config.getoption("numprocesses", None) or os.environ.get("PYTEST_XDIST_WORKER"):
        raise pytest.UsageError("evalsuite: --adapter does not run under pytest-xdist (-n): each worker would load "
                                "the base model again and write its own results file. Run without -n (evalsuite "
                                "generates every column in shared batches in one process), or shard over GPUs with "
                                "`evalsuite probe --num-processes N --out results.json` and `evalsuite gate`")


def _configured_state(config: pytest.Config, run_dirs: list[str | Path]) -> _State:
    """Options and gates, validated before collection: bad values are usage errors before anything loads."""
    from evalsuite.gates.declared import resolve_gates
    from evalsuite.probe.cli import local_columns
    from evalsuite.probe.options import check_out, options_from
    from evalsuite.results.io import load_results

    probes = config.rootpath / "probes"
    options = options_from(config.getoption, "plugin", battery_dirs=[probes] if probes.is_dir() else [])
    opt = config.getoption
    check_out(_path(opt("probe_out")), local_columns(run_dirs), options, "plugin",
              inputs=[_path(opt("gate_baseline")), _path(opt("gate_config"))])
    gates = resolve_gates(opt("gate"), _path(opt("gate_config")), _path(opt("gate_baseline")), opt("gate_alpha"))
    baseline = load_results(gates.baseline_path) if gates.gates and gates.baseline_path is not None else None
    return _State(options, _path(opt("probe_out")), gates, baseline, run_dirs=run_dirs)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


class ProbeItem(pytest.Item):
    def __init__(self, *, battery: Any, target: Any, case: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.battery, self.target, self.case = battery, target, case
        self.key = (battery.name, case.id, target.name)

    def runtest(self) -> None:
        state = self.config.stash[STATE]
        _ensure_run(self.session, state)
        sample = state.samples[self.key]
        self.user_properties += [("adapter", sample.adapter), ("finish_reason", sample.finish_reason),
                                 ("output", sample.output), ("scorer", sample.scorer.name)]
        if not sample.ran:  # no verdict: reported apart from failures, and the session exits 2
            pytest.skip(f"not run: {sample.not_run_reason}")
        if not sample.passed:
            raise ProbeFailure(sample)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ProbeFailure):
            from evalsuite.probe.asserts import failure_text

            return failure_text(excinfo.value.sample)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.battery.path, None, f"{self.battery.name}[{self.target.name}-{self.case.id}]"


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """Plan before files are collected: run dirs and batteries checked, the columns known to parametrize
    ``probe_model``."""
    state = session.config.stash.get(STATE, None)
    if state is not None and state.plan is None:
        state.plan = _plan(session.config, state)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test using ``probe_model`` runs once per column, its id the column name."""
    state = metafunc.config.stash.get(STATE, None)
    if "probe_model" in metafunc.fixturenames and state is not None and state.plan is not None:
        names = [t.name for t in state.plan.targets]
        metafunc.parametrize("probe_model", names, ids=names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def probe_model(request: pytest.FixtureRequest) -> ProbeModel:
    """One column to chat with (``.chat(prompt)``, ``.generate(prompts)``), once per ``--adapter`` and the base
    with ``--probe-base``; the same loaded base, engine, template, stop ids and cache as the batteries."""
    state = request.config.stash.get(STATE, None)
    if state is None or not hasattr(request, "param"):
        pytest.skip("probe_model: no model to probe; pass --adapter RUN_DIR")
    return _probe_session(state).models[request.param]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the probe items before ``-m``/``-k`` deselection runs (so ``-m probes`` selects them), and mark users'
    tests that chat with ``probe_model`` as probes too."""
    state = config.stash.get(STATE, None)
    if state is None:
        return
    plan = state.plan
    assert plan is not None  # planned in pytest_collection
    for item in items:
        if "probe_model" in getattr(item, "fixturenames", ()):
            item.add_marker(MARKER)
    for name, reason in plan.skipped.items():
        node = BatteryNode.from_parent(session, name=name, nodeid=f"probes/{name}")
        stub = UnavailableBattery.from_parent(node, name=f"{name}[unavailable]", reason=reason,
                                              nodeid=f"{node.nodeid}::{name}[unavailable]")
        _report_collected(config, node, [stub])
        items.append(stub)
    for battery in plan.batteries:
        node = BatteryNode.from_parent(session, name=battery.name, nodeid=f"probes/{battery.name}")
        node.add_marker(MARKER)
        mine: list[pytest.Item] = []
        for target in plan.targets:
            for case in battery.cases:
                name = f"{battery.name}[{target.name}-{case.id}]"
                # nodeid spelt out: pytest parses "name[params]" in stored ids (the --lf cache), so the item's own
                # id must be parsed the same way for `--lf` to find it
                item = ProbeItem.from_parent(node, name=name, nodeid=f"{node.nodeid}::{name}", battery=battery,
                                             target=target, case=case)
                item.add_marker(MARKER)
                mine.append(item)
        _report_collected(config, node, mine)
        items.extend(mine)


def _plan(config: pytest.Config, state: _State) -> ProbePlan:
    """Run dirs and batteries checked (a usage error each), their warnings shown as pytest's."""
    import warnings

    from evalsuite.errors import EvalsuiteError
    from evalsuite.probe.runner import plan_probes

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan = plan_probes(state.run_dirs, state.options)
    except EvalsuiteError as e:
        raise pytest.UsageError(f"evalsuite: {e}") from None
    for w in caught:
        if "skipping battery" not in str(w.message):
            config.issue_config_time_warning(pytest.PytestWarning(f"evalsuite: {w.message}"), stacklevel=2)
    return plan


def _report_collected(config: pytest.Config, node: pytest.Collector, items: list[pytest.Item]) -> None:
    """Tell the other plugins (terminal counts, ``--collect-only``) about items made outside file collection."""
    config.hook.pytest_collectreport(report=pytest.CollectReport(node.nodeid, "passed", None, list(items)))
    for item in items:
        config.hook.pytest_itemcollected(item=item)


def _probe_session(state: _State) -> ProbeSession:
    if state.probe is None:
        from evalsuite.probe.session import ProbeSession

        assert state.plan is not None  # planned at collection, before any item runs
        state.probe = ProbeSession(state.plan)
    return state.probe


def _ensure_run(session: pytest.Session, state: _State) -> None:
    if state.run is not None:
        return
    from evalsuite.errors import EvalsuiteError

    selected = {i.key for i in session.items if isinstance(i, ProbeItem)}
    try:
        state.run = _probe_session(state).run_batteries(selected)
    except EvalsuiteError as e:
        pytest.exit(f"evalsuite: {e}", returncode=pytest.ExitCode.USAGE_ERROR)
    state.samples = {(s.battery, s.case, s.adapter): s for s in state.run.results.samples}


REPLIES_FROM = pytest.StashKey[int]()  # where a user test's replies start in its column's history


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Note where a user test's replies start; afterwards put its last reply on the JUnit record as probe items do."""
    model = _user_model(item)
    if model is None:
        return (yield)
    item.stash[REPLIES_FROM] = len(model.history)
    try:
        return (yield)
    finally:
        if len(model.history) > item.stash[REPLIES_FROM]:
            last = model.history[-1]
            item.user_properties += [("adapter", last.adapter), ("finish_reason", last.finish_reason),
                                     ("output", last.text)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Record a user test's verdict as a sample of the ``user`` battery (case: its node id without the column), and
    show its last reply under a failure that no evalsuite assertion explained."""
    report: pytest.TestReport = yield
    model = _user_model(item)
    state = item.config.stash.get(STATE, None)
    if call.when != "call" or model is None or state is None or report.outcome == "skipped":
        return report
    from evalsuite.probe.asserts import ProbeAssertionError, failure_text
    from evalsuite.probe.usertests import user_sample

    replies = model.history[item.stash.get(REPLIES_FROM, len(model.history)):]
    error = call.excinfo.value if call.excinfo is not None else None
    sample = user_sample(item.nodeid, model.name, replies, error)
    if sample is not None and not sample.ran:  # a reply was not run: no verdict, whatever the test concluded
        state.user_samples.append(sample)
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.reportinfo()[1] or 0, f"Skipped: not run: {sample.not_run_reason}")
        return report
    if sample is not None:
        state.user_samples.append(sample)
        if report.failed and not isinstance(error, ProbeAssertionError):
            report.sections.append(("evalsuite: last reply", failure_text(sample)))
    return report


def _user_model(item: pytest.Item) -> ProbeModel | None:
    funcargs = getattr(item, "funcargs", {})
    return funcargs.get("probe_model") if hasattr(item, "callspec") else None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the results and apply the gates before the terminal summary and the JUnit file are written."""
    state = session.config.stash.get(STATE, None)
    if state is None or state.probe is None or (state.run is None and not state.user_samples):
        return
    from evalsuite.errors import EvalsuiteError

    state.results = results = state.probe.results(state.user_samples, selection(session.config))
    try:
        if state.out is not None:
            from evalsuite.probe.runner import write_run

            write_run(results, state.out, state.probe.cache_dir)  # a full disk: one error saying where they are
        _apply_gates(state, results)
    except EvalsuiteError as e:
        state.gate_lines = [f"ERROR evalsuite: {e}"]
        state.gates_passed = False
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
        return
    if not state.gates_passed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    from evalsuite.probe.outcome import not_run_lines

    state.not_run = not_run_lines(results.samples)
    if state.not_run and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        session.exitstatus = NOT_RUN_EXIT  # samples without a verdict: neither a pass nor a plain failure
    from _pytest.junitxml import xml_key

    xml = session.config.stash.get(xml_key, None)
    if xml is not None and state.gate_lines:
        xml.add_global_property("evalsuite_gates", "\n".join(state.gate_lines))
        xml.add_global_property("evalsuite_gates_passed", str(state.gates_passed).lower())
    if xml is not None and state.not_run:
        xml.add_global_property("evalsuite_not_run", str(len(results.not_run())))
        xml.add_global_property("evalsuite_not_run_reasons", "\n".join(state.not_run))


def _apply_gates(state: _State, results: Results) -> None:
    from evalsuite.gates.evaluate import evaluate_gates

    if not state.gates.gates:
        return
    report = evaluate_gates(results, state.baseline, state.gates.gates, state.gates.alpha, skip_missing=True)
    state.gate_lines = report.lines()
    state.gates_passed = report.passed


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or state.results is None or state.probe is None:
        return
    from evalsuite.probe.runner import summary_lines

    tr, probe = terminalreporter, state.probe
    tr.write_sep("=", "evalsuite probes")
    for line in summary_lines(state.results):
        tr.write_line(line)
    tr.write_line(f"generated {probe.generated}, from cache {probe.cached}; base loads {probe.pool.loads}"
                  + (f"; results: {state.out}" if state.out else ""))
    if state.gate_lines:
        tr.write_sep("=", "evalsuite gates")
        for line in state.gate_lines:
            tr.write_line(line, red=line.startswith(("FAIL", "ERROR")), green=line.startswith("PASS"))
