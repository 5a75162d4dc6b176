"""End to end on the tiny model (issue 5): a baseline recorded from the good adapter; a deliberately worse adapter
(trained to echo, not to uppercase) fails the regression gate with its flipped cases listed; the good one passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import call_main

pytestmark = pytest.mark.slow
GATE = "uppercase-echo.accuracy: -2%"


def probe(adapter: Path, out: Path) -> Path:
    # probe exits 1 when a case fails (like pytest); either way it writes the results file
    assert call_main(["probe", str(adapter), "--battery", "uppercase-echo", "--out", str(out)]) in (0, 1)
    assert out.is_file()
    return out


def test_regression_gate_against_a_recorded_baseline(tmp_path: Path, demo_adapter: Path,
                                                     broken_terminator_adapter: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    good = probe(demo_adapter, tmp_path / "good.json")
    baseline = tmp_path / "baseline.json"
    assert call_main(["baseline", "record", str(good), "-o", str(baseline), "--force"]) == 0
    recorded = json.loads(baseline.read_text())
    assert recorded["baseline"] and json.dumps(recorded["baseline"]).count(
        json.loads(good.read_text())["adapters"][0]["manifest_digest"]) >= 1
    capsys.readouterr()

    # the same adapter again: identical results never fail a regression gate
    again = probe(demo_adapter, tmp_path / "again.json")
    capsys.readouterr()
    assert call_main(["gate", str(again), "--baseline", str(baseline), "--gate", GATE]) == 0
    passed = capsys.readouterr().out
    assert "uppercase-echo.accuracy" in passed

    worse = probe(broken_terminator_adapter, tmp_path / "worse.json")
    capsys.readouterr()
    assert call_main(["gate", str(worse), "--baseline", str(baseline), "--gate", GATE]) == 1
    failed = capsys.readouterr().out
    assert "FAIL" in failed.upper() and "uppercase-echo.accuracy" in failed
    assert "p=" in failed or "p =" in failed  # the paired test's p-value is reported
    # flipped cases are listed by prompt: the seed prompt the good adapter got right and the worse one does not
    good_samples = {s["case"]: s for s in json.loads(good.read_text())["samples"]}
    worse_samples = {s["case"]: s for s in json.loads(worse.read_text())["samples"]}
    flipped = [c for c, s in good_samples.items() if s["passed"] and not worse_samples[c]["passed"]]
    assert flipped and any(good_samples[c]["prompt"] in failed or c in failed for c in flipped)

    # bad input is exit 2, not a crash
    assert call_main(["gate", str(tmp_path / "missing.json"), "--baseline", str(baseline), "--gate", GATE]) == 2
