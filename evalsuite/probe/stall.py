"""The clock of the stall rule (:mod:`evalsuite.probe.guard` has the rule itself): one :class:`StallGuard` per
generation pass, one :class:`Watch` per batch, wound by every sign of progress. Kept apart from the guard so that
:mod:`evalsuite.probe.generation` (whose settings carry the guard) imports nothing that imports it back."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StallGuard:
    """The stall rule of one generation pass, shared by every batch of it (and every worker thread)."""

    seconds: float | None  # no new token for this long: stalled (None: never)
    stalls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def stuck(self) -> bool:
        """Two stalls in one pass: the engine is stuck, not slow."""
        return self.stalls >= 2

    def watch(self) -> Watch:
        return Watch(self)

    def stall(self) -> None:
        with self.lock:
            self.stalls += 1


class Watch:
    """The clock of one batch (or one prompt): started when the batch starts, wound by every sign of progress."""

    def __init__(self, guard: StallGuard) -> None:
        self.guard = guard
        self.last = time.perf_counter()
        self.longest = 0.0  # the longest wait between two signs of progress since the last check
        self.fired = False

    def token(self) -> None:
        """Progress (new tokens, a layer of the prefill done): the engine is alive."""
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.last = now

    def stalled(self) -> bool:
        """True when some wait for progress since the last check (or the start), the one up to now included, was
        longer than the guard's seconds, or the engine is stuck (then at once). A check is itself a sign of
        progress (engines check when tokens came). A true answer is final for this watch: the batch stops."""
        if self.fired:
            return True
        seconds = self.guard.seconds
        self.token()
        longest, self.longest = self.longest, 0.0
        if seconds is None:
            return False
        if self.guard.stuck or longest > seconds:
            self.fired = True
            if not self.guard.stuck:
                self.guard.stall()
            return True
        return False


_current = threading.local()  # the watch of the batch this thread decodes (for progress inside a forward pass)


@contextlib.contextmanager
def watching(watch: Watch | None) -> Iterator[None]:
    """Make ``watch`` this thread's current one: :func:`progress` winds it (a forward hook on each decoder layer)."""
    before = getattr(_current, "watch", None)
    _current.watch = watch
    try:
        yield
    finally:
        _current.watch = before


def progress(*_: Any) -> None:
    """A sign of progress for this thread's current watch, if any (usable as a torch forward hook)."""
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.token()
