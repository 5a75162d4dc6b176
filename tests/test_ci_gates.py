"""CI proves it ran what matters: ``.ci/run`` stops with a clear error when the third-party fixtures are missing or
Chromium cannot run (both checked before anything is installed or tested), and under ``.ci/run`` the browser test
fails instead of skipping."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ci_run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / ".ci" / "run")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def stub(folder: Path, name: str, rc: int) -> None:
    exe = folder / name
    exe.write_text(f"#!/bin/sh\nexit {rc}\n", encoding="utf-8")
    exe.chmod(0o755)


def test_ci_fails_without_the_fixtures(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("apt-get", "pip", "python3", "python"):  # reached only if the check let it through
        stub(bin_dir, name, 97)
    proc = ci_run({"EVALSUITE_FIXTURES": str(tmp_path / "missing"), "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"third-party fixtures not found at {tmp_path / 'missing'}" in proc.stderr


def test_ci_fails_when_chromium_cannot_run(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "chromium", 1)  # installed but broken
    stub(bin_dir, "chromedriver", 0)
    for name in ("apt-get", "pip", "python3", "python"):
        stub(bin_dir, name, 97)
    (tmp_path / "fixtures").mkdir()
    proc = ci_run({"EVALSUITE_FIXTURES": str(tmp_path / "fixtures"), "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "chromium and chromedriver are not runnable" in proc.stderr


def test_browser_test_fails_under_ci_and_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    from test_report_browser import unavailable

    monkeypatch.setenv("EVALSUITE_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="EVALSUITE_REQUIRE_BROWSER=1 but no chromium"):
        unavailable("no chromium")
    monkeypatch.delenv("EVALSUITE_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        unavailable("no chromium")
