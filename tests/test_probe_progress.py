"""What a probe session says about itself (evalsuite.probe.progress): the progress bar is drawn only on a terminal and
its counters match what was generated (driven through the runner with tests/fake_engine.py); the session's cost
(seconds, peak memory) is recorded in the results' ``engine.session``, versioned, and files without it still load;
the hf engine imports peft without bitsandbytes and leaves no trace of having hidden it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fake_engine import FakeEngine, register

from evalsuite.errors import EvalsuiteError
from evalsuite.probe.progress import ProbeProgress
from evalsuite.probe.runner import ProbeOptions, execute, plan_probes
from evalsuite.results.io import results_from_dict, write_results

MINI = "name: mini\nscorer: exact_match\nexpect: upper\nmax_new_tokens: 24\ncases: [hello, abc def, hellow world]\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def plan(demo_adapter: Path, tmp_path: Path) -> object:
    FakeEngine.reset()
    register()
    battery = tmp_path / "mini.yaml"
    battery.write_text(MINI, encoding="utf-8")
    return plan_probes([demo_adapter], ProbeOptions(batteries=[str(battery)], engine="fake", include_base=True,
                                                    use_cache=False))


def test_the_bar_is_off_when_not_a_terminal_and_counts_prompts_and_tokens_per_column(plan: object) -> None:
    run = execute(plan, progress_to=io.StringIO())  # type: ignore[arg-type]
    assert run.progress is not None and run.progress.enabled is False
    samples = run.results.samples
    assert run.progress.done == {"demo": 3, "base": 3}
    assert run.progress.tokens == {a: sum(s.tokens for s in samples if s.adapter == a) for a in ("demo", "base")}
    assert run.progress.tokens["demo"] > 3  # the fake's replies are several tokens each


def test_the_bar_is_drawn_on_a_terminal_with_the_same_counts(plan: object) -> None:
    stream = Terminal()
    run = execute(plan, progress_to=stream)  # type: ignore[arg-type]
    assert run.progress is not None and run.progress.enabled is True
    assert run.progress.done == {"demo": 3, "base": 3}
    assert stream.getvalue()  # rich wrote the bar (transient: erased at the end)


def test_an_engine_that_reports_nothing_is_counted_when_it_returns() -> None:
    progress = ProbeProgress({"a": 2}, {"x": "a"})
    from evalsuite.probe.generation import Generation

    gens = [("x", Generation("A", "eos", 2, 0.0, "A")), ("x", Generation("B", "eos", 3, 0.0, "B"))]
    progress.settle(gens)
    assert (progress.done, progress.tokens) == ({"a": 2}, {"a": 5})
    progress.settle(gens)  # already counted (by the engine or by settle): not counted twice
    assert progress.done == {"a": 2}


def test_the_session_cost_is_recorded_and_read_back(plan: object, tmp_path: Path) -> None:
    run = execute(plan, progress_to=io.StringIO())  # type: ignore[arg-type]
    session = run.results.engine.settings["session"]
    assert session["version"] == 1 and session["peak_rss_bytes"] > 10 * 2**20  # a python process with torch
    assert session["generate_s"] >= 0 and session["load_s"] >= 0 and session["peak_cuda_bytes"] is None
    write_results(run.results, tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert results_from_dict(data).engine.settings["session"] == session
    del data["engine"]["session"]  # a file written before sessions were recorded
    assert "session" not in results_from_dict(data).engine.settings
    data["engine"]["session"] = {**session, "version": 2}
    with pytest.raises(EvalsuiteError, match=r"engine\.session\.version: expected 1, got 2 \(written by a newer"):
        results_from_dict(data)
    data["engine"]["session"] = {**session, "peak_rss_bytes": "lots"}
    with pytest.raises(EvalsuiteError, match=r"engine\.session\.peak_rss_bytes: expected a finite number"):
        results_from_dict(data)


def test_columns_on_one_base_hash_its_weights_once_and_not_at_all_without_a_cache(
        plan: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-up a session of N adapters pays once, not N times, and ``--no-cache`` not at all: the base's fingerprint
    (a hash of its weights, part of the cache key)."""
    from dataclasses import replace

    import evalsuite.probe.runner as runner

    calls = []

    def counted(base: str, revision: str | None = None) -> dict[str, object]:
        calls.append(base)
        return {"id": base, "revision": revision}

    monkeypatch.setattr(runner, "base_fingerprint", counted)
    run = execute(plan, progress_to=io.StringIO())  # type: ignore[arg-type]  # the fixture's plan: no cache
    assert {s.adapter for s in run.results.samples} == {"demo", "base"} and calls == []
    cached = replace(plan, options=replace(plan.options, use_cache=True, cache_dir=tmp_path))  # type: ignore
    run = execute(cached, progress_to=io.StringIO())
    assert {s.adapter for s in run.results.samples} == {"demo", "base"} and len(calls) == 1
    assert run.cache_dir is not None  # and the generations were saved under the key it made


def test_peft_is_imported_and_adapters_attached_without_bitsandbytes_and_nothing_stays_hidden(
        demo_adapter: Path) -> None:
    pytest.importorskip("bitsandbytes")
    code = ("import sys\n"
            "from evalsuite.probe.runner import ProbeOptions, plan_probes\n"
            "from evalsuite.probe.engines import EngineSpec\n"
            "from evalsuite.probe.engines.hf import HFEngine\n"
            "t = plan_probes([sys.argv[1]], ProbeOptions(batteries=['uppercase-echo'])).targets[0]\n"
            "HFEngine(EngineSpec(t.base_model, {'a': t.codec}, {'a': t.path}, device='cpu'))\n"
            "import peft.import_utils as u\n"
            "print('bitsandbytes' in sys.modules, u.is_bnb_available(), 'peft' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, str(demo_adapter)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "True"]  # not imported, and still found when asked for
