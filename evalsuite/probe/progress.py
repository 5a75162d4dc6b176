"""What a probe session says about itself: a progress bar while it generates, and its cost once it is done (seconds
spent loading and generating, peak memory), recorded in the results' engine settings under ``session``.

The bar (rich) shows one line per column: prompts done / total, tokens/s, elapsed. It is drawn only when stdout is
a terminal, so CI logs and piped output stay clean; the counters are kept either way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from evalsuite.probe.generation import Generation
from evalsuite.results.schema import SESSION_VERSION


@dataclass
class SessionCost:
    load_s: float = 0.0  # building engines: base weights and adapters
    generate_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        rss, cuda = peak_memory()
        return {"version": SESSION_VERSION, "load_s": round(self.load_s, 3), "generate_s": round(self.generate_s, 3),
                "peak_rss_bytes": rss, "peak_cuda_bytes": cuda}


def peak_memory() -> tuple[int | None, int | None]:
    """(peak resident set size of this process, peak CUDA memory allocated by torch) in bytes; None where unknown."""
    try:
        import resource
    except ImportError:  # Windows
        rss = None
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss = int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux
    torch = sys.modules.get("torch")  # only if an engine imported it: never import torch for this
    cuda = None
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = int(torch.cuda.max_memory_allocated())
    return rss, cuda


@dataclass
class ProbeProgress:
    """Counters per column, and a rich bar over them when ``enabled``. Use as a context manager around generation,
    passing :meth:`update` as the engine's ``progress`` callback."""

    totals: Mapping[str, int]  # column name -> prompts to generate
    columns: Mapping[str | None, str]  # a job's adapter name -> its column name
    enabled: bool = False
    stream: TextIO | None = None  # where the bar is drawn (None: stdout)
    done: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    _bar: Any = None
    _tasks: dict[str, Any] = field(default_factory=dict)
    _last: float = field(default_factory=time.perf_counter)  # when the previous batch ended
    _started: dict[str, float] = field(default_factory=dict)  # column -> when its first batch began

    @classmethod
    def for_stream(cls, totals: Mapping[str, int], columns: Mapping[str | None, str], stream: TextIO | None = None,
                   draw: bool = True) -> ProbeProgress:
        """Drawn only when ``draw`` and ``stream`` (default stdout) is a terminal."""
        stream = stream if stream is not None else sys.stdout
        return cls(totals, columns, enabled=draw and bool(getattr(stream, "isatty", lambda: False)()), stream=stream)

    def __enter__(self) -> ProbeProgress:
        self._last = time.perf_counter()
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]:>8} tok/s"), TimeElapsedColumn(), transient=True,
                                 console=Console(file=self.stream))
            self._bar.start()
            self._tasks = {name: self._bar.add_task(name, total=total, rate="-") for name, total in self.totals.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def settle(self, finished: Sequence[tuple[str | None, Generation]]) -> None:
        """Count what an engine that reports no progress of its own generated (its columns still at zero)."""
        silent = {self.columns[a] for a, _ in finished} - set(self.done)
        self.update([(a, g) for a, g in finished if self.columns[a] in silent])

    def update(self, finished: Sequence[tuple[str | None, Generation]]) -> None:
        now = time.perf_counter()
        for adapter, gen in finished:
            name = self.columns[adapter]
            self._started.setdefault(name, self._last)
            self.done[name] = self.done.get(name, 0) + 1
            self.tokens[name] = self.tokens.get(name, 0) + gen.tokens
        self._last = now
        if self._bar is not None:
            for name in {self.columns[a] for a, _ in finished}:
                rate = self.tokens[name] / max(now - self._started[name], 1e-9)
                self._bar.update(self._tasks[name], completed=self.done[name], rate=f"{rate:.0f}")
