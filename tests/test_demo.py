"""The demo of the foundation issue, now with every battery: the same pipeline `evalsuite demo` runs (the demo
adapter trained by ``evalsuite.demo.train_demo_adapter``, probed by ``evalsuite.demo.probe_demo``), with the same
assertions: adapter >= 0.8 and base <= 0.1 uppercase-echo exact match."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from evalsuite.demo import TARGET_ADAPTER, TARGET_BASE, accuracy, probe_demo, table_lines

pytestmark = pytest.mark.slow
SIX = ["uppercase-echo", "cyrillic", "runaway-turns", "template-leakage", "squad", "llama32-ten"]


def test_demo_pipeline_meets_its_targets_on_every_battery(demo_adapter: Path, shared_fixtures: Path) -> None:
    results = probe_demo(demo_adapter)
    base, n = accuracy(results, "base")
    adapter, _ = accuracy(results, "adapter")
    assert n == 100
    assert adapter >= TARGET_ADAPTER, adapter
    assert base <= TARGET_BASE, base
    assert results.batteries() == SIX
    assert [a.kind for a in results.adapters] == ["base", "adapter"]
    assert len(results.samples_for("squad", "demo")) == 20
    lines = table_lines(results)
    assert lines[0].split()[:4] == ["battery", "metric", "base", "demo"]
    assert any(line.split()[:2] == ["squad", "f1"] for line in lines)


def test_demo_command_prints_the_table_and_exits_0(demo_adapter: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from cli_helpers import call_main

    run = tmp_path / "demo"
    shutil.copytree(demo_adapter, run)
    rc = call_main(["demo", "--out", str(run), "--reuse", "--results", str(tmp_path / "demo.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "uppercase-echo    accuracy" in out and "runaway-turns     rate" in out
    assert "  base     " in out and "ok" in out and "MISSED" not in out
    assert (tmp_path / "demo.json").is_file()
    # the side-by-side report, beside the run dir by default, its path printed; every stage timed
    report = tmp_path / "demo-report.html"
    assert f"report:  {report}" in out
    html = report.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") or html.lstrip().lower().startswith("<!doctype html>")
    assert "uppercase-echo" in html and "cyrillic" in html
    stages = next(line for line in out.splitlines() if line.startswith("time by stage: "))
    assert [part.split()[0] for part in stages.removeprefix("time by stage: ").split(", ")][:4] == \
        ["base", "train", "probe", "report"]
    assert "cyrillic answers by kind" in out
