"""Batches planned from memory (evalsuite.probe.memplan) and the hf engine under the runner's rules: --max-memory
parses or fails naming the flag; a row's bytes grow by exactly one KV position per new token; longer prompts get
fewer rows; the planned batches, an out-of-memory split and a slow prefill change no output, while a stuck layer is
a stall."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from evalsuite.errors import EvalsuiteError
from evalsuite.probe.memplan import Budget, Plan, Shape, parse_memory, plan, row_bytes

SHAPE = Shape(layers=30, hidden=576, intermediate=1536, heads=9, kv_heads=3, head_dim=64, vocab=49152, dtype_bytes=4)


def test_max_memory_sizes_and_shares_parse_and_anything_else_names_the_flag() -> None:
    assert parse_memory("2G") == Budget(size=2 * 2**30)
    assert parse_memory("800MB") == Budget(size=800 * 2**20) and parse_memory("1.5GiB") == Budget(size=3 * 2**29)
    assert parse_memory("4096") == Budget(size=4096) and parse_memory("40%") == Budget(share=0.4)
    for bad in ("lots", "2X", "0%", "150%", "0", "-1G"):
        with pytest.raises(EvalsuiteError, match=r"^--probe-max-memory: expected"):
            parse_memory(bad, "--probe-max-memory")


def test_a_new_token_adds_exactly_one_kv_position_and_longer_prompts_fit_fewer_rows() -> None:
    position = 2 * SHAPE.layers * SHAPE.kv_heads * SHAPE.head_dim * SHAPE.dtype_bytes  # keys + values, every layer
    assert row_bytes(SHAPE, 200, 33) - row_bytes(SHAPE, 200, 32) == position
    assert row_bytes(SHAPE, 400, 32) > 2 * row_bytes(SHAPE, 100, 32)  # the cache and activations, more than linear
    budget = Plan(per_batch=512 * 2**20, workers=2)
    short, long = budget.rows(SHAPE, 40, 32), budget.rows(SHAPE, 600, 32)
    assert long < short <= 64 and long * row_bytes(SHAPE, 600, 32) <= 512 * 2**20
    assert Plan(per_batch=1, workers=1).rows(SHAPE, 600, 32) == 1  # never below one row


def test_a_battery_is_cut_so_every_batch_fits_at_its_own_longest_prompt() -> None:
    lengths = sorted([60] * 40 + [300] * 30 + [900] * 10)
    budget = Plan(per_batch=400 * 2**20, workers=2)
    sizes = budget.cut(SHAPE, lengths, 32)
    assert sum(sizes) == len(lengths)
    start = 0
    for n in sizes:  # each batch's rows, left-padded to its longest prompt, fit the budget
        assert n * row_bytes(SHAPE, lengths[start + n - 1], 32) <= 400 * 2**20 or n == 1
        start += n
    assert sizes[0] > sizes[-1]  # short prompts share bigger batches than the longest ones
    assert budget.cut(SHAPE, [10] * 200, 4) == [50] * 4  # at most 64 rows, evened out: no short batch left alone


def test_the_budget_counts_the_weights_and_is_shared_by_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.probe import memplan

    monkeypatch.setattr(memplan, "free_memory", lambda device: 10 * 2**30)
    weights = 2**30
    assert plan("cpu", weights, 2, Budget(size=3 * 2**30)).per_batch == 2**30  # (3 - 1) GiB over two workers
    assert plan("cpu", weights, 2, Budget(share=0.2)).per_batch == 2**30  # 20% of the free 10 GiB, over two
    assert plan("cpu", weights, 2, None).per_batch == weights  # default on CPU: the weights' size per worker
    with pytest.raises(EvalsuiteError, match=r"--max-memory: 0.50 GiB leaves nothing for batches beside the model"):
        plan("cpu", weights, 1, Budget(size=2**29))


@pytest.fixture(scope="module")
def engine(tiny_base: Path) -> Any:
    """The hf engine on the tiny base as a merged model (its own outputs, whatever they are, are the reference)."""
    from evalsuite.probe.engines import EngineSpec
    from evalsuite.probe.engines.hf import HFEngine
    from evalsuite.probe.runner import ProbeOptions, plan_probes

    target = plan_probes([tiny_base], ProbeOptions(batteries=["uppercase-echo"])).targets[0]
    return HFEngine(EngineSpec(target.base_model, {None: target.codec}, {}, device="cpu"))


@pytest.fixture(scope="module")
def requests() -> list[Any]:
    from evalsuite.probe.batteries import load_battery, resolve_batteries
    from evalsuite.probe.generation import Request

    cases = load_battery(resolve_batteries(["uppercase-echo"])[0]).cases
    return [Request(c.messages, 24) for c in cases[:12]]


def texts(gens: list[Any]) -> list[tuple[str, str, bool]]:
    return [(g.text, g.finish_reason, g.time_capped) for g in gens]


def recorded_sizes(engine: Any, monkeypatch: pytest.MonkeyPatch, fail_above: int | None = None) -> list[int]:
    """Record the size of every batch the engine decodes; ``fail_above``: larger ones hit an allocator failure."""
    sizes: list[int] = []
    real = type(engine)._batch

    def batch(self: Any, prompts: list[Any], *args: Any, **kwargs: Any) -> Any:
        if fail_above is not None and len(prompts) > fail_above:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        sizes.append(len(prompts))
        return real(self, prompts, *args, **kwargs)

    monkeypatch.setattr(type(engine), "_batch", batch)
    return sizes


def test_planned_batches_and_out_of_memory_splits_change_no_output(engine: Any, requests: list[Any],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.probe.generation import GenerationSettings

    fixed = engine.generate(requests, None, GenerationSettings(batch_size=64))
    sizes = recorded_sizes(engine, monkeypatch)
    room = engine.weight_bytes + 3 * row_bytes(Shape.of(engine.model.config, 4), 40, 24)  # about three rows
    planned = engine.generate(requests, None, GenerationSettings(auto_batch=True, max_memory=str(room)))
    assert texts(planned) == texts(fixed) and max(sizes) <= 3 and sum(sizes) == len(requests)
    monkeypatch.undo()
    sizes = recorded_sizes(engine, monkeypatch, fail_above=4)
    split = engine.generate(requests, None, GenerationSettings(batch_size=64))
    assert texts(split) == texts(fixed) and max(sizes) <= 4 and sum(sizes) == len(requests)


def layer_delay(engine: Any, seconds: float, only: int | None = None) -> Any:
    """Sleep ``seconds`` in each decoder layer (or layer ``only``) during the prefill (more than one position)."""
    import torch

    layers = max((m for m in engine.model.modules() if isinstance(m, torch.nn.ModuleList)), key=len)

    def slow(module: Any, args: Any, kwargs: Any) -> None:
        hidden = args[0] if args else kwargs.get("hidden_states")
        if hidden is not None and hidden.shape[1] > 1:
            time.sleep(seconds)

    return [layer.register_forward_pre_hook(slow, with_kwargs=True)
            for i, layer in enumerate(layers) if only is None or i == only]


def test_a_slow_prefill_progresses_layer_by_layer_and_a_stuck_layer_is_a_stall(engine: Any,
                                                                               requests: list[Any]) -> None:
    from evalsuite.probe.generation import GenerationSettings

    stall = 8.0  # each layer's sleep below leaves seconds of slack for a loaded machine
    settings = GenerationSettings(batch_size=64, stall_seconds=stall)
    fast = engine.generate(requests, None, settings)
    hooks = layer_delay(engine, stall * 0.6)
    try:
        t0 = time.perf_counter()
        slow = engine.generate(requests, None, settings)
        assert len(hooks) >= 2 and time.perf_counter() - t0 > stall  # the prefill took longer than the guard's S
    finally:
        for h in hooks:
            h.remove()
    assert texts(slow) == texts(fast) and not any(g.time_capped for g in slow)
    hooks = layer_delay(engine, stall * 1.5, only=0)
    try:
        stuck = engine.generate(requests, None, settings)
    finally:
        for h in hooks:
            h.remove()
    assert all(g.time_capped for g in stuck if g.finish_reason == "max-tokens")
    assert sum(g.time_capped for g in stuck) == len(requests)  # stopped after the first token: none was done
