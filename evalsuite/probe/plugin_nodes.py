"""The pytest nodes of the evalsuite plugin (:mod:`evalsuite.pytest_plugin`) that need none of its state: a
battery's collector, a failed case's exception, the stand-in for a battery whose data is missing, and the words
that name how pytest chose a session's items. Imported only by the plugin (it is the one place pytest is)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

MARKER = "probes"


class ProbeFailure(AssertionError):
    """A probe case that did not pass; carries the sample for the failure report."""

    def __init__(self, sample: Any) -> None:
        super().__init__(f"{sample.battery}[{sample.adapter}-{sample.case}] failed")
        self.sample = sample


class BatteryNode(pytest.Collector):
    """One battery; its children are created by the plugin at collection, not by reading files."""

    def collect(self) -> list[pytest.Item]:  # pragma: no cover - items are attached directly
        return []


class UnavailableBattery(pytest.Item):
    """Stands in for a battery whose data is missing (the SQuAD dev set): one skip with the reason."""

    def __init__(self, *, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason
        self.add_marker(MARKER)

    def runtest(self) -> None:
        pytest.skip(self.reason)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


def selection(config: pytest.Config) -> str:
    """What chose this session's items, for a results file that holds only some of the planned cases."""
    parts = [f"-k {config.option.keyword!r}" if config.option.keyword else "",
             f"-m {config.option.markexpr!r}" if config.option.markexpr else "",
             "--lf" if config.getoption("lf", False) else "", "--ff" if config.getoption("failedfirst", False) else "",
             "--sw" if config.getoption("stepwise", False) else "",
             "--deselect" if config.getoption("deselect", None) else ""]
    return "pytest " + " ".join(p for p in parts if p) if any(parts) else "pytest's selection"
