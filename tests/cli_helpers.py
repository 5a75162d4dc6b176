"""Every CLI test runs under a time limit, so a hang fails the test instead of stalling the suite.

- :func:`run_cli` runs ``python -m evalsuite.cli ARGS`` in a subprocess with ``timeout=`` and returns its exit code
  and output; unless told otherwise it asserts that stderr holds no Python traceback (bad input is one line).
- :func:`call_main` calls ``evalsuite.cli.main(argv)`` in-process under :func:`time_limit` (SIGALRM; no extra
  dependency such as pytest-timeout). A signal interrupts Python code, not one long C call, which is why tests of
  hangs in C (a huge allocation) use :func:`run_cli`.
- :func:`tree_digest` hashes a user's files and folders, to assert that a refused command changed nothing.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds; the slowest CLI tests train or generate on a loaded 2-core machine


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def run_cli(*args: str | os.PathLike[str], timeout: float = TIMEOUT, cwd: Path | None = None,
            env: dict[str, str] | None = None, traceback_ok: bool = False, module: str = "evalsuite.cli",
            ) -> CliResult:
    """``python -m evalsuite.cli ARGS`` (or another ``module``) under ``timeout``; a hang fails the test."""
    argv = [sys.executable, "-m", module, *(str(a) for a in args)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as e:
        tail = (e.stderr or b"")[-2000:] if isinstance(e.stderr, bytes) else (e.stderr or "")[-2000:]
        pytest.fail(f"`{' '.join(argv[2:])}` did not finish within {timeout} s (a hang?); stderr tail:\n{tail!r}")
    if not traceback_ok:
        assert "Traceback (most recent call last)" not in done.stderr, done.stderr[-3000:]
    return CliResult(done.returncode, done.stdout, done.stderr)


class TimeLimitExceeded(Exception):
    pass


@contextmanager
def time_limit(seconds: float, what: str = "the block") -> Iterator[None]:
    """Fail the test when the block runs longer than ``seconds`` (SIGALRM, main thread only)."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeLimitExceeded(f"{what} did not finish within {seconds} s (a hang?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except TimeLimitExceeded as e:
        pytest.fail(str(e))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def call_main(argv: Sequence[str | os.PathLike[str]], timeout: float = TIMEOUT) -> int:
    """``evalsuite.cli.main(argv)`` in-process, under :func:`time_limit`."""
    from evalsuite.cli import main

    args = [str(a) for a in argv]
    with time_limit(timeout, f"evalsuite {' '.join(args)}"):
        return main(args)


def tree_digest(*paths: Path) -> str:
    """One digest of files and folders (names, contents, and which exist): equal before and after = untouched."""
    h = hashlib.sha256()
    for root in paths:
        h.update(str(root).encode())
        if root.is_file():
            h.update(b"F" + root.read_bytes())
        elif root.is_dir():
            for p in sorted(root.rglob("*")):
                h.update(str(p.relative_to(root)).encode())
                h.update(b"F" + p.read_bytes() if p.is_file() else b"D")
        else:
            h.update(b"missing")
    return h.hexdigest()
