"""CPU batches two at a time on one model, each op of a batch on its own share of the cores.

A CPU decode step is matmuls (compute-bound) and, between them, attention over the KV cache (memory-bound), small
elementwise ops and Python. Two batches decoded at once from two threads, each with half the intra-op threads,
overlap one batch's memory-bound and Python parts with the other's matmuls; the weights are shared (one copy), only
the KV caches and activations are per batch. At the 55.6M real shape on 2 cores (``benchmarks/probe_bench.py
--real-shape``, 100 prompts x 96 new tokens) 50 + 50 rows decoded together took 8.5-9.4 s against 10.9-13.1 s for
64 then 36 rows and 9.4-10.7 s for one batch of 100; 200 prompts 17.9 s as four batches of 50 against 23.4-23.7 s
as 64, 64, 64 and 8. The plan cuts the prompts into batches of nearly equal size (:func:`batch_sizes`), so the two
workers finish together. Measured on 2 cores only: with more, the same two workers split the threads.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

MIN_ROWS = 32  # a batch is not cut below this for a worker: one thread's matmuls at 16 rows run at 60% of 64 rows'
# Below this a step is mostly Python, which two threads take turns at (the GIL): the 452k-parameter demo model took
# 0.22-0.28 s for 64 prompts x 64 tokens with two workers against 0.20-0.22 s with one.
MIN_PARAMETERS = 10_000_000

T = TypeVar("T")
R = TypeVar("R")


def cpu_workers(threads: int, parameters: int) -> int:
    """Batches decoded at once on a CPU with ``threads`` intra-op threads by a model of ``parameters``: two when the
    threads split evenly and the model is large enough for its matmuls to dominate a step, else one."""
    return 2 if threads >= 2 and threads % 2 == 0 and parameters >= MIN_PARAMETERS else 1


def batch_sizes(n: int, size: int, workers: int = 1) -> list[int]:
    """``n`` rows cut into nearly equal batches of at most ``size``: as few as ``size`` allows, and for ``workers``
    more than one, a multiple of ``workers`` where every batch keeps :data:`MIN_ROWS` rows (100 rows at 64 and two
    workers: 50 + 50, not 64 + 36, of which the second would run alone)."""
    k = -(-n // size)
    if workers > 1:
        fuller = -(-k // workers) * workers
        if n // fuller >= MIN_ROWS:
            k = fuller
    return [n // k + (i < n % k) for i in range(k)]


@contextlib.contextmanager
def op_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` (process-wide; worker threads read it) and put back afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_batches(run: Callable[[T, threading.Event | None], R], batches: Sequence[T], workers: int,
                done: Callable[[T, R], None]) -> None:
    """``done(batch, run(batch, cancel))`` for every batch, ``done`` always in the calling thread. With more than
    one worker and batch, ``workers`` batches run at once, each op on ``threads // workers`` threads; when one fails
    or the caller is interrupted, ``cancel`` is set (the decode loop stops at its next step) and the error is
    raised once the others have stopped."""
    import torch

    if workers <= 1 or len(batches) <= 1:
        for batch in batches:
            done(batch, run(batch, None))
        return
    cancel = threading.Event()

    def start(batch: T) -> R:
        if cancel.is_set():  # a worker free after a failure takes no new batch
            raise _Skipped
        try:
            return run(batch, cancel)
        except BaseException:
            cancel.set()  # before this worker can take the next batch
            raise

    with op_threads(max(1, torch.get_num_threads() // workers)), \
            ThreadPoolExecutor(workers, thread_name_prefix="evalsuite-batch") as pool:
        pending: dict[Future[Any], T] = {pool.submit(start, batch): batch for batch in batches}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    batch, error = pending.pop(future), future.exception()
                    if isinstance(error, _Skipped):
                        continue  # the failure that set ``cancel`` is raised from its own batch
                    if error is not None:
                        raise error
                    done(batch, future.result())
        except BaseException:
            cancel.set()
            for future in pending:
                future.cancel()
            raise


class _Skipped(Exception):
    """A batch not started because another had failed."""
