"""The runner on adapters really trained on the tiny base: each battery the issue names can fail and can pass, the
finish reasons are what happened, batched generation equals one-by-one, the results file is complete, and the
generation cache serves unchanged adapters and regenerates changed ones."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from evalsuite.probe.runner import ProbeOptions, execute, plan_probes, run_probes
from evalsuite.results.io import load_results
from evalsuite.results.schema import Results

pytestmark = pytest.mark.slow

# Which column runs which battery: enough to show every verdict both ways without generating all pairs.
SELECTION = {
    "uppercase-echo": ("demo", "base"),
    "cyrillic": ("demo", "base", "upper-all"),
    "runaway-turns": ("demo", "broken-terminator"),
    "template-leakage": ("demo", "leaky"),
    "llama32-ten": ("demo",),
}


@pytest.fixture(scope="module")
def results(demo_adapter: Path, broken_terminator_adapter: Path, leaky_adapter: Path, upper_all_adapter: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Results:
    options = ProbeOptions(batteries=list(SELECTION), include_base=True)
    plan = plan_probes([demo_adapter, broken_terminator_adapter, leaky_adapter, upper_all_adapter], options)
    selected = {(b.name, c.id, t.name) for b in plan.batteries for t in plan.targets for c in b.cases
                if t.name in SELECTION[b.name]}
    out = tmp_path_factory.mktemp("results") / "results.json"
    from evalsuite.results.io import write_results

    write_results(execute(plan, selected).results, out)
    return load_results(out)


def acc(results: Results, battery: str, column: str) -> float:
    metric = results.metric(battery, column, "accuracy")
    assert metric is not None, (battery, column)
    return metric.value


def test_demo_adapter_passes_uppercase_echo_and_the_base_fails(results: Results) -> None:
    assert acc(results, "uppercase-echo", "demo") >= 0.8
    assert acc(results, "uppercase-echo", "base") <= 0.1
    seed = {s.case: s for s in results.samples_for("uppercase-echo", "demo")}
    assert seed["hellow-world"].output == "HELLOW WORLD" and seed["hellow-world"].passed
    base = {s.case: s for s in results.samples_for("uppercase-echo", "base")}
    assert base["hellow-world"].output == "hellow world" and not base["hellow-world"].passed
    char = results.metric("uppercase-echo", "demo", "char_accuracy")
    assert char is not None and char.method == "bootstrap"
    assert char.ci_low is not None and char.ci_high is not None and char.ci_low <= char.value <= char.ci_high


def test_demo_adapter_stops_and_the_broken_terminator_runs_into_new_turns(results: Results) -> None:
    assert acc(results, "runaway-turns", "demo") >= 0.9
    broken = results.samples_for("runaway-turns", "broken-terminator")
    assert acc(results, "runaway-turns", "broken-terminator") <= 0.1
    reasons = {s.finish_reason for s in broken if not s.passed}
    assert reasons <= {"new-turn", "max-tokens"} and "new-turn" in reasons  # it opens the next turn itself
    rate = results.metric("runaway-turns", "broken-terminator", "rate")
    assert rate is not None and rate.value >= 0.9 and rate.method == "wilson"
    assert all(s.finish_reason == "eos" for s in results.samples_for("runaway-turns", "demo") if s.passed)


def test_leaky_adapter_fails_template_leakage_and_the_demo_adapter_passes(results: Results) -> None:
    assert acc(results, "template-leakage", "demo") >= 0.9
    # most of its outputs leak the (often half-learned, "_end_of_turn_") marker; the demo adapter's never do
    assert acc(results, "template-leakage", "leaky") <= 0.5
    leaked = [s for s in results.samples_for("template-leakage", "leaky") if not s.passed]
    assert any("end_of_turn" in p for s in leaked for p in s.details["problems"])


def test_cyrillic_passes_with_the_upper_all_adapter_and_failures_are_classified(results: Results) -> None:
    assert acc(results, "cyrillic", "upper-all") >= 0.6
    assert {s.output for s in results.samples_for("cyrillic", "upper-all") if s.case == "privet"} == {"ПРИВЕТ"}
    base = results.samples_for("cyrillic", "base")
    assert acc(results, "cyrillic", "base") == 0.0
    assert {s.details["failure"] for s in base} >= {"unchanged"}  # the base echoes Cyrillic unchanged
    demo = results.samples_for("cyrillic", "demo")  # trained on Latin only
    assert acc(results, "cyrillic", "demo") <= 0.2
    assert all(s.details["failure"] in (None, "transliterated", "unchanged", "wrong-script", "other") for s in demo)


def test_results_file_has_samples_and_metrics_with_cis(results: Results) -> None:
    s = results.samples_for("llama32-ten", "demo")[4]
    assert s.prompt == "Continue the Fibonacci sequence: 1, 1, 2, 3, 5, 8,"
    assert s.scorer.name == "open_ended" and s.expected == {"contains": ["13", "21"]}
    assert not s.passed  # an echo model does not know Fibonacci
    for sample in results.samples:
        assert sample.finish_reason in ("eos", "stop-string", "max-tokens", "new-turn")
        assert sample.tokens >= 1 and sample.latency_s >= 0
    for m in results.metrics:
        assert m.ci_low is not None and m.ci_high is not None and m.ci_low <= m.value <= m.ci_high
    assert [a.kind for a in results.adapters] == ["base", "adapter", "adapter", "adapter", "adapter"]
    assert all(a.weights_sha256 and a.manifest_digest for a in results.adapters if a.kind == "adapter")
    assert results.engine.settings["device"] == "cpu"


def test_batched_generation_equals_one_by_one(demo_adapter: Path) -> None:
    from evalsuite.probe.engines import EngineSpec
    from evalsuite.probe.engines.hf import HFEngine
    from evalsuite.probe.generation import GenerationSettings, Request

    plan = plan_probes([demo_adapter], ProbeOptions(batteries=["runaway-turns"]))
    target = plan.targets[0]
    engine = HFEngine(EngineSpec(target.base_model, {target.adapter_name: target.codec}, {"adapter0": demo_adapter}))
    requests = [Request(c.messages, 48) for c in plan.batteries[0].cases[:12]]
    batched = engine.generate(requests, "adapter0", GenerationSettings(batch_size=12))
    single = engine.generate(requests, "adapter0", GenerationSettings(batch_size=1))
    assert [(g.text, g.finish_reason) for g in batched] == [(g.text, g.finish_reason) for g in single]
    assert len({len(r.messages) for r in requests}) > 1  # prompts of different lengths share a padded batch


def test_decoder_matches_transformers_generate_with_mixed_adapters(demo_adapter: Path) -> None:
    """Our decode loop (rows dropped as they stop) against ``model.generate`` on a batch mixing the adapter and the
    base: the same tokens up to each row's stop."""
    import torch
    from decode_support import assert_same_tokens, demo_batch

    from evalsuite.probe.engines.decode import greedy_decode

    batch = demo_batch(demo_adapter)
    names = ["a", "__base__"] * 12
    with torch.inference_mode():
        reference = batch.engine.model.generate(**batch.generate_kwargs(), adapter_names=names)
        ours = greedy_decode(batch.engine.model, batch.ids, batch.mask, 64, batch.stops, names)
    assert_same_tokens(batch, reference, ours.rows)
    assert not ours.capped


def small_battery(tmp: Path) -> Path:
    p = tmp / "tiny.yaml"
    p.write_text("name: tiny\nscorer: exact_match\nexpect: upper\nmax_new_tokens: 24\n"
                 "cases: [hello, abc def, hellow world]\n", encoding="utf-8")
    return p


def run_small(run_dir: Path, tmp: Path, cache: Path, **kw: Any) -> Any:
    options = ProbeOptions(batteries=[str(small_battery(tmp))], cache_dir=cache, **kw)
    return run_probes([run_dir], options, out=tmp / "r.json")


def test_cache_serves_unchanged_adapter_and_regenerates_a_changed_one(leaky_adapter: Path,
                                                                     broken_terminator_adapter: Path,
                                                                     tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(leaky_adapter, run_dir)
    cache = tmp_path / "cache"
    first = run_small(run_dir, tmp_path, cache)
    assert (first.generated, first.cached) == (3, 0)
    again = run_small(run_dir, tmp_path, cache)
    assert (again.generated, again.cached) == (0, 3)
    assert [s.output for s in again.results.samples] == [s.output for s in first.results.samples]
    # same path, different weights: another adapter's file of the same shapes replaces this one's
    shutil.copy(broken_terminator_adapter / "adapter_model.safetensors", run_dir / "adapter_model.safetensors")
    changed = run_small(run_dir, tmp_path, cache)
    assert (changed.generated, changed.cached) == (3, 0)
    # other generation settings are other keys too
    assert run_small(run_dir, tmp_path, cache, max_new_tokens=20).generated == 3
    assert run_small(run_dir, tmp_path, cache, use_cache=False).generated == 3


def test_base_is_loaded_once_for_several_adapters(demo_adapter: Path, leaky_adapter: Path, tmp_path: Path) -> None:
    from evalsuite.probe.engines import EngineSpec
    from evalsuite.probe.engines.hf import HFEngine

    built: list[HFEngine] = []

    def counting(spec: EngineSpec) -> HFEngine:  # the real engine, counted: one per base model
        built.append(HFEngine(spec))
        return built[-1]

    plan = plan_probes([demo_adapter, leaky_adapter], ProbeOptions(batteries=[str(small_battery(tmp_path))],
                                                                   include_base=True, use_cache=False))
    run = execute(plan, engine=counting)
    assert len(built) == 1 and sorted(built[0].model.peft_config) == ["adapter0", "adapter1"]
    assert {s.adapter for s in run.results.samples} == {"base", "demo", "leaky"}
    leaky = {s.case: s.output for s in run.results.samples if s.adapter == "leaky"}
    base = {s.case: s.output for s in run.results.samples if s.adapter == "base"}
    assert leaky["hello"] != base["hello"]  # switching adapters really switches weights


def test_probe_cli_exit_codes_results_and_summary(demo_adapter: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from cli_helpers import call_main

    passing = tmp_path / "always.yaml"
    passing.write_text("name: always\nscorer: contains\nmax_new_tokens: 8\ncases: [{prompt: hi, expected: []}]\n",
                       encoding="utf-8")
    out = tmp_path / "r.json"
    assert call_main(["probe", str(demo_adapter), "--battery", str(passing), "--out", str(out)]) == 0
    assert load_results(out).samples[0].adapter == "demo"
    assert call_main(["probe", str(demo_adapter), "--base", "--battery", str(small_battery(tmp_path)),
                 "--out", str(out)]) == 1  # the base fails uppercase: some case failed
    printed = capsys.readouterr().out
    assert "tiny              base              0/3" in printed and f"results: {out}" in printed


def test_warns_when_the_training_template_differs_from_the_base_template(broken_terminator_adapter: Path,
                                                                         demo_adapter: Path) -> None:
    with pytest.warns(UserWarning, match="differs from the base model's own template"):
        plan_probes([broken_terminator_adapter], ProbeOptions(batteries=["runaway-turns"]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan_probes([demo_adapter], ProbeOptions(batteries=["runaway-turns"]))  # same template: no warning
