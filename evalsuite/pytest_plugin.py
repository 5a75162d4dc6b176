"""pytest plugin (entry point ``pytest11``): probe batteries as pytest items.

Thin hooks over the pytest-free runner. Without ``--adapter`` it stays inert and cheap: no torch import.
"""

from __future__ import annotations

from typing import Any


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("evalsuite", "evalsuite probes")
    group.addoption("--adapter", action="append", default=[], metavar="DIR",
                    help="run dir of a trained adapter to probe (repeatable)")


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "probes: probe battery cases (collected by the evalsuite plugin)")
