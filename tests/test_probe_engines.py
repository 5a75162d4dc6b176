"""The engine protocol and registry, and the runner driven through them with the fake engine (tests/fake_engine.py):
names resolve or fail listing the known ones, the runner builds one engine per base from a spec holding only the
columns that need generating, scripted replies are classified by the column's codec like real generations, the cache
serves what an engine generated, and sharding a job list over processes gives back generate_mixed's list."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_engine import FakeEngine, register

from evalsuite.errors import EvalsuiteError
from evalsuite.probe import engines
from evalsuite.probe.engines import EngineSpec, check_engine_name, engine_class, shard_by_prompt
from evalsuite.probe.generation import GenerationSettings, Request
from evalsuite.probe.runner import ProbeOptions, execute, plan_probes


@pytest.fixture
def fake() -> type[FakeEngine]:
    FakeEngine.reset()
    return register()


def options(battery: Path, tmp: Path, **kw: object) -> ProbeOptions:
    return ProbeOptions(batteries=[str(battery)], engine="fake", cache_dir=tmp / "cache", **kw)  # type: ignore[arg-type]


def test_builtin_engines_resolve_and_an_unknown_name_lists_the_known_ones(fake: type[FakeEngine]) -> None:
    from evalsuite.probe.engines.gguf import GGUFEngine
    from evalsuite.probe.engines.hf import HFEngine
    from evalsuite.probe.engines.vllm import VLLMEngine

    assert engine_class("hf") is HFEngine and engine_class("vllm") is VLLMEngine  # vllm itself is not imported
    from evalsuite.probe.engines.endpoint import EndpointEngine

    assert engine_class("gguf") is GGUFEngine and engine_class("endpoint") is EndpointEngine
    assert engine_class("fake") is FakeEngine
    assert engines.ENGINES.group == engines.ENTRY_POINT_GROUP == "evalsuite.engines"
    known = "endpoint, fake, gguf, hf"
    with pytest.raises(EvalsuiteError, match=rf"unknown engine 'llamafile'; known engines: {known}, vllm"):
        engine_class("llamafile")
    with pytest.raises(EvalsuiteError, match=rf"^--probe-engine: unknown engine 'llama'; known engines: {known}"):
        check_engine_name("llama", "--probe-engine")


def test_runner_generates_through_a_registered_engine(fake: type[FakeEngine], demo_adapter: Path, mini: Path,
                                                      tmp_path: Path) -> None:
    plan = plan_probes([demo_adapter], options(mini, tmp_path, include_base=True))
    run = execute(plan)
    [engine] = fake.built  # one base, one engine, built from the registry by name
    assert engine.spec.base_model == plan.targets[0].base_model
    assert engine.spec.device == run.results.engine.settings["device"]
    assert dict(engine.spec.adapters) == {"adapter0": demo_adapter}
    assert set(engine.spec.codecs) == {None, "adapter0"}
    assert (run.generated, run.cached, fake.generated()) == (6, 0, 6)
    verdicts = {(s.adapter, s.case): (s.output, s.finish_reason, s.passed) for s in run.results.samples}
    assert verdicts[("demo", "hello")] == ("HELLO", "eos", True)
    assert verdicts[("base", "hello")] == ("hello", "eos", False)
    assert run.results.engine.name == "fake" and "tensor_parallel_size" not in run.results.engine.settings
    again = execute(plan_probes([demo_adapter], options(mini, tmp_path, include_base=True)))
    assert (again.generated, again.cached) == (0, 6) and len(fake.built) == 1  # all cached: no engine is built


def test_only_the_columns_with_misses_are_attached_and_only_selected_items_generated(
        fake: type[FakeEngine], demo_adapter: Path, mini: Path, tmp_path: Path) -> None:
    plan = plan_probes([demo_adapter], options(mini, tmp_path, include_base=True))
    run = execute(plan, {("mini", "hello", "base"), ("mini", "abc-def", "base")})
    [engine] = fake.built
    assert dict(engine.spec.adapters) == {}  # the adapter column had nothing to generate
    assert [(a, r.messages[-1]["content"]) for a, r in engine.calls[0]] == [(None, "hello"), (None, "abc def")]
    assert sorted(s.case for s in run.results.samples) == ["abc-def", "hello"]


def test_a_factory_passed_to_the_runner_is_used_and_its_replies_are_classified(
        fake: type[FakeEngine], demo_adapter: Path, mini: Path, tmp_path: Path) -> None:
    script = {"hello": "HELLO", "abc def": "ABC<|im_start|>assistant", "hellow world": "HELLOW WORLD " * 10}
    plan = plan_probes([demo_adapter], options(mini, tmp_path, use_cache=False))
    run = execute(plan, engine=lambda spec: FakeEngine(spec, script))
    tk = plan.targets[0].codec.tk
    got = {s.case: (s.output, s.finish_reason, s.tokens) for s in run.results.samples}
    assert got["hello"] == ("HELLO", "eos", len(tk.encode("HELLO")) + 1)  # the stop token counts
    assert got["abc-def"] == ("ABC", "new-turn", len(tk.encode("ABC")) + 1)  # ran into the next turn's header
    assert got["hellow-world"][1:] == ("max-tokens", 24)  # longer than the battery's 24-token budget: a runaway
    assert [s.passed for s in run.results.samples] == [True, False, False]


def test_shards_of_every_rank_together_are_the_whole_job_list(fake: type[FakeEngine], demo_adapter: Path,
                                                              mini: Path, tmp_path: Path) -> None:
    plan = plan_probes([demo_adapter], options(mini, tmp_path, include_base=True))
    codec = plan.targets[1].codec
    engine = FakeEngine(EngineSpec("base", {None: codec, "adapter0": codec}, {"adapter0": demo_adapter}))
    jobs = [(a, Request(({"role": "user", "content": f"p{i}"},), 8)) for i in range(7) for a in (None, "adapter0")]
    whole = engine.generate_mixed(jobs, GenerationSettings())
    merged: dict[int, object] = {}
    for rank in range(3):
        part = shard_by_prompt(engine, jobs, GenerationSettings(), rank, 3)
        assert not merged.keys() & part.keys()
        merged.update(part)
    assert [merged[i] for i in range(len(jobs))] == whole
    with pytest.raises(EvalsuiteError, match="no adapter named 'adapter9' is loaded"):
        engine.generate_mixed([("adapter9", jobs[0][1])], GenerationSettings())
