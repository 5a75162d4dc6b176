"""Two CPU batches at once (``engines.workers``): the plan's batch sizes, the pool (two really run together, each op
on its share of the threads, results handed back in the calling thread, a failure stopping the others within a
step), and the engine's generations equal to one worker's."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evalsuite.probe.engines import workers
from evalsuite.probe.engines.workers import MIN_PARAMETERS, MIN_ROWS, batch_sizes, cpu_workers, run_batches


@given(st.integers(1, 2000), st.integers(1, 256), st.integers(1, 4))
def test_batches_cover_the_rows_in_near_equal_sizes_within_the_batch_size(n: int, size: int, k: int) -> None:
    sizes = batch_sizes(n, size, k)
    assert sum(sizes) == n and max(sizes) <= size and max(sizes) - min(sizes) <= 1
    fewest = -(-n // size)
    assert len(sizes) == fewest or (len(sizes) % k == 0 and min(sizes) >= MIN_ROWS)  # more only to feed workers


def test_a_tail_batch_is_evened_out_and_workers_get_a_batch_each_when_rows_allow() -> None:
    assert batch_sizes(100, 64) == [50, 50]  # not 64 + 36
    assert batch_sizes(200, 64, 2) == [50] * 4  # not 64, 64, 64, 8
    assert batch_sizes(150, 64, 2) == [38, 38, 37, 37]  # 3 batches would leave one running alone
    assert batch_sizes(64, 64, 2) == [32, 32]
    assert batch_sizes(40, 64, 2) == [40]  # 20 rows each would run below MIN_ROWS
    assert batch_sizes(40, 64, 1) == [40]


def test_two_workers_only_for_even_threads_and_a_model_whose_matmuls_dominate() -> None:
    assert cpu_workers(2, MIN_PARAMETERS) == 2 and cpu_workers(16, 10**9) == 2
    assert cpu_workers(1, 10**9) == 1 and cpu_workers(3, 10**9) == 1
    assert cpu_workers(2, MIN_PARAMETERS - 1) == 1  # the 452k demo model: Python-bound, the GIL would serialise it


def test_batches_run_two_at_once_on_half_the_threads_and_finish_in_the_calling_thread() -> None:
    import torch

    before = torch.get_num_threads()
    both_running = threading.Barrier(2, timeout=10)  # broken unless two batches are inside run() together
    seen: list[tuple[str, int]] = []
    finished: list[tuple[str, str]] = []

    def run(batch: str, cancel: threading.Event | None) -> str:
        assert cancel is not None
        seen.append((batch, torch.get_num_threads()))
        if batch in "ab":
            both_running.wait()
        return batch.upper()

    with workers.op_threads(2):
        run_batches(run, ["a", "b", "c"], 2, lambda b, r: finished.append((b + r, threading.current_thread().name)))
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    assert sorted(seen) == [("a", 1), ("b", 1), ("c", 1)]
    assert sorted(finished) == [("aA", "MainThread"), ("bB", "MainThread"), ("cC", "MainThread")]


def test_a_failing_batch_stops_the_others_at_their_next_step_and_is_raised() -> None:
    stopped: list[float] = []

    def run(batch: str, cancel: threading.Event | None) -> str:
        assert cancel is not None
        if batch == "bad":
            time.sleep(0.2)
            raise ValueError("bad batch")
        t0 = time.perf_counter()
        while not cancel.is_set() and time.perf_counter() - t0 < 30:  # a long decode, a step at a time
            time.sleep(0.01)
        stopped.append(time.perf_counter() - t0)
        return batch

    t0 = time.perf_counter()
    with workers.op_threads(2), pytest.raises(ValueError, match="bad batch"):
        run_batches(run, ["long", "bad", "queued"], 2, lambda b, r: None)
    assert time.perf_counter() - t0 < 10
    assert len(stopped) == 1 and stopped[0] < 10  # "queued" never started


def test_an_interrupt_in_the_calling_thread_stops_the_running_batches() -> None:
    stopped: list[str] = []

    def run(batch: str, cancel: threading.Event | None) -> str:
        assert cancel is not None
        t0 = time.perf_counter()
        while batch == "long" and not cancel.is_set() and time.perf_counter() - t0 < 30:
            time.sleep(0.01)
        stopped.append(batch)
        return batch

    def done(batch: str, result: str) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the main thread hands back the first result

    t0 = time.perf_counter()
    with workers.op_threads(2), pytest.raises(KeyboardInterrupt):
        run_batches(run, ["long", "short"], 2, done)
    assert time.perf_counter() - t0 < 10 and sorted(stopped) == ["long", "short"]


def test_one_worker_or_one_batch_runs_in_the_calling_thread() -> None:
    names: list[str] = []
    run_batches(lambda b, cancel: names.append(threading.current_thread().name), ["x"], 2, lambda b, r: None)
    run_batches(lambda b, cancel: names.append(threading.current_thread().name), ["x", "y"], 1, lambda b, r: None)
    assert names == ["MainThread"] * 3


@pytest.mark.slow
def test_two_workers_generate_what_one_does(demo_adapter: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from evalsuite.probe.engines import EngineSpec, hf
    from evalsuite.probe.generation import GenerationSettings, Request
    from evalsuite.probe.runner import ProbeOptions, plan_probes

    plan = plan_probes([demo_adapter], ProbeOptions(batteries=["runaway-turns", "uppercase-echo"]))
    target = plan.targets[0]
    requests = [Request(c.messages, 48) for b in plan.batteries for c in b.cases][:24]
    settings = GenerationSettings(batch_size=8)

    def texts(n: int) -> list[tuple[str, str]]:
        engine = hf.HFEngine(EngineSpec(target.base_model, {"a": target.codec, None: target.codec},
                                        {"a": demo_adapter}, device="cpu", options={"cpu_workers": n}))
        assert engine.workers == n
        return [(g.text, g.finish_reason) for g in engine.generate_mixed(
            [(a, r) for a in ("a", None) for r in requests], settings)]

    inside, most = [0], [0]
    real = hf.greedy_decode

    def counted(*args: Any, **kwargs: Any) -> Any:
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.05)  # the demo model decodes a batch in milliseconds: long enough for the other to start
        try:
            return real(*args, **kwargs)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(hf, "greedy_decode", counted)
    one = texts(1)
    assert most[0] == 1
    threads = torch.get_num_threads()
    with workers.op_threads(2):
        two = texts(2)
    assert most[0] == 2 and torch.get_num_threads() == threads
    assert two == one and len({t for t, _ in one}) > 4
