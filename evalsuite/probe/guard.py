"""What a run may cost, decided once for every engine: a stall guard against a stuck engine (not a wall-clock cut
of a slow one), out-of-memory batches split and retried, and generations the model was not let to finish marked
``not-run`` instead of scored.

The rules:

- **Stall**: an engine is stalled when it makes no progress for ``S`` seconds (``--max-batch-seconds S``, default
  120; 0: never): no new token, and for the hf engine no decoder layer of the prompts' prefill finished either (a
  long prefill of a big batch on a slow CPU is progress, layer by layer). A slow but healthy model progresses every
  few seconds at worst and is never stopped, however long its batch runs: a runaway is bounded by
  ``max_new_tokens``, not by the clock. Engines check between tokens (:meth:`Watch.stalled`), and a gap seen
  anywhere since the last check counts: a call that never returns cannot be stopped from inside, it is stopped
  when it returns.
- **Retry**: the rows of a stalled batch that had not finished are generated again once, in batches half as large.
- **Stuck**: a second stall in one pass means the engine is stuck: from then every watch reports a stall at its
  next check, so the rest of the pass ends at once, and every generation still unfinished is ``not-run``.
- **Out of memory** (CPU ``MemoryError`` or an allocator failure, ``torch.cuda.OutOfMemoryError``): the batch is
  split in halves and each half run again (:class:`OomSplitter`); later batches of the pass are cut to the size
  that fitted. Generations already made are kept. A single prompt that does not fit alone is ``not-run``.

How an engine takes part (the built-in hf and gguf engines, the fake engine of the tests, and any engine an entry
point adds): per batch (or per prompt) it takes ``watch = settings.watch()``, calls ``watch.token()`` when a step
gave new tokens and stops when ``watch.stalled()`` is true; a generation it stopped that way is returned with
``time_capped=True`` (whatever text it had). Everything else (retries, not-run records, the message naming the
option, never caching them) happens here, in :func:`generate_guarded`, which the runner calls for every engine. An
engine that batches internally and cannot check between tokens (vLLM) simply never returns ``time_capped``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from evalsuite.probe.stall import StallGuard

if TYPE_CHECKING:
    from evalsuite.probe.engines import Engine, Job
    from evalsuite.probe.generation import Generation, GenerationSettings

log = logging.getLogger("evalsuite.probe")

STALL_OPTION = "--max-batch-seconds"
MEMORY_OPTION = "--max-memory"
NOT_RUN = "not-run"  # the finish reason (evalsuite.results.schema.NOT_RUN)

T = TypeVar("T")


def stall_reason(seconds: float | None) -> str:
    return (f"the engine gave no new token for {seconds or 0:g} s (stalled, and again when retried: stuck, not "
            f"slow); raise or disable the stall guard with {STALL_OPTION} S (0: off; pytest: --probe-"
            f"{STALL_OPTION[2:]})")


def oom_reason() -> str:
    return (f"out of memory with this prompt alone; free memory, or use a smaller max_new_tokens ({MEMORY_OPTION} "
            "and --batch-size cannot make one prompt smaller)")


def not_run(reason: str, latency: float = 0.0) -> Generation:
    """The record of a generation the model was not let to finish: no text, no verdict, never cached."""
    from evalsuite.probe.generation import Generation

    return Generation("", NOT_RUN, 0, latency, "", not_run=reason)


def stuck(settings: GenerationSettings) -> bool:
    """The pass's engine is stuck: a batch not started yet is not started (its prefill would only be waited for),
    its rows come back as stopped (:func:`stopped`)."""
    return settings.guard is not None and settings.guard.stuck


def stopped(n: int) -> list[Generation]:
    """``n`` generations the stall guard stopped before they began."""
    from evalsuite.probe.generation import Generation

    return [Generation("", "max-tokens", 0, 0.0, "", time_capped=True) for _ in range(n)]


def generate_guarded(engine: Engine, jobs: Sequence[Job], settings: GenerationSettings,
                     generate: Callable[[Engine, Sequence[Job], GenerationSettings], list[Generation]],
                     retry: bool = True) -> list[Generation]:
    """``generate(engine, jobs, settings)`` under the stall rule: time-stopped rows retried once in half-size
    batches, then ``not-run`` (with the reason naming the option) when the engine stalls again. ``retry`` False
    (data-parallel probing, where the processes could not agree on a retry without another exchange): a stopped
    row is not run at once."""
    guard = StallGuard(settings.stall_seconds)
    first = generate(engine, jobs, replace(settings, guard=guard))
    out = list(first)
    stopped = [i for i, g in enumerate(first) if g.time_capped]
    if not stopped:
        return out
    log.warning("the engine stalled (no new token for %g s; %s): %d generation(s) %s", settings.stall_seconds,
                STALL_OPTION, len(stopped), "run again in smaller batches" if retry and not guard.stuck else "not run")
    if retry and not guard.stuck:
        smaller = replace(settings, batch_size=max(1, min(settings.batch_size, len(stopped)) // 2), guard=guard)
        from evalsuite.probe.engines import GenerationInterrupted

        try:
            again = generate(engine, [jobs[i] for i in stopped], smaller)
        except GenerationInterrupted as e:  # an engine fault in the retry: keep what both passes finished
            finished = {i: g for i, g in enumerate(first) if not g.time_capped}
            finished.update((stopped[j], g) for j, g in e.done.items())
            raise GenerationInterrupted(str(e), finished) from None
        for i, g in zip(stopped, again, strict=True):
            out[i] = g
    reason = stall_reason(settings.stall_seconds)
    return [not_run(reason, g.latency_s) if g.time_capped else g for g in out]


def is_oom(error: BaseException) -> bool:
    """An allocation failure: ``MemoryError``, ``torch.cuda.OutOfMemoryError`` (a RuntimeError), or a
    RuntimeError from torch's CPU allocator ("DefaultCPUAllocator: can't allocate memory", "not enough memory")."""
    if isinstance(error, MemoryError):
        return True
    name = type(error).__name__
    if name == "OutOfMemoryError":
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                                or "not enough memory" in text or "failed to allocate" in text)


class OomSplitter(Generic[T]):
    """Runs batches through ``run``; a batch that runs out of memory is split in halves, each run again, and the
    size that fitted caps every later batch of the same pass (so one OOM is paid once, not per batch). A single
    row that does not fit alone gets ``alone(row)`` (a not-run record). Thread-safe: the CPU workers share one."""

    def __init__(self, alone: Callable[[Any], T]) -> None:
        self.alone = alone
        self.limit: int | None = None  # the largest batch known to fit since the last OOM
        self.lock = threading.Lock()
        self.splits = 0

    def run(self, rows: list[Any], run: Callable[[list[Any]], list[T]]) -> list[T]:
        limit = self.limit
        if limit is not None and len(rows) > limit:
            return [g for part in _halves(rows, limit) for g in self.run(part, run)]
        try:
            return run(rows)
        except Exception as e:  # only allocation failures are handled; the rest is raised again
            if not is_oom(e):
                raise
        _free_cuda_cache()
        if len(rows) == 1:
            log.warning("out of memory with one prompt alone: it is not run (%s)", MEMORY_OPTION)
            return [self.alone(rows[0])]
        half = -(-len(rows) // 2)
        with self.lock:
            self.splits += 1
            self.limit = half if self.limit is None else min(self.limit, half)
        log.warning("out of memory in a batch of %d prompts: split in two and run again", len(rows))
        return [g for part in (rows[:half], rows[half:]) for g in self.run(part, run)]


def _halves(rows: list[Any], limit: int) -> list[list[Any]]:
    """``rows`` cut into nearly equal consecutive parts of at most ``limit``."""
    k = -(-len(rows) // limit)
    sizes = [len(rows) // k + (i < len(rows) % k) for i in range(k)]
    out, start = [], 0
    for n in sizes:
        out.append(rows[start:start + n])
        start += n
    return out


def _free_cuda_cache() -> None:
    """After a CUDA OOM, hand the failed batch's cached blocks back before the halves run (no-op without torch)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
