"""Every kind of column gives the run dir's greedy outputs, for real on the tiny model: a PEFT folder saved by peft,
a checkpoint-only trainer output, a merged model and a hub adapter id from the local cache, mixed in one session,
through `evalsuite probe` and through the pytest plugin; two bases of different widths in one session (one load
each, one results file, one report with both)."""
# ruff: noqa: F811  (the fixtures imported from probe_kinds_support are requested by name)

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from probe_kinds_support import (  # noqa: F401  (the fixtures: what users have, made from the demo run dir)
    ADAPTER_ID,
    battery,
    hub_cache,
    kinds_root,
    merged_model,
    narrow_adapter,
    narrow_base,
    outputs_by_column,
    peft_folder,
    trainer_output,
)

pytestmark = pytest.mark.slow
pytest_plugins = ["pytester"]
COLUMNS = ["demo", "peft-plain", "trainer-out-checkpoint-60", "merged", "tiny-adapter"]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evalsuite.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


def _hub_env(cache: Path) -> dict[str, str]:
    return {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def _same_as_run_dir(results: dict[str, Any]) -> None:
    outputs = outputs_by_column(results)
    assert list(outputs) == COLUMNS
    assert len(outputs["demo"]) == 4 and any(o.isupper() for o in outputs["demo"].values())  # the adapter's skill
    for name in COLUMNS[1:]:
        assert outputs[name] == outputs["demo"], name


@pytest.fixture
def kinds(demo_adapter: Path, peft_folder: Path, trainer_output: Path, merged_model: Path,
          hub_cache: Path) -> list[str]:
    return [str(demo_adapter), str(peft_folder), str(trainer_output), str(merged_model), ADAPTER_ID]


def test_every_kind_gives_the_run_dirs_outputs_with_the_cli(kinds: list[str], hub_cache: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = _cli("probe", *kinds, "--battery", str(battery(tmp_path)), "--out", str(out), "--no-cache",
                "--device", "cpu", env=_hub_env(hub_cache))
    assert proc.returncode in (0, 1), proc.stderr
    assert "trainer-out-checkpoint-60" in proc.stdout  # the checkpoint probed is named in the output
    assert "skipped: checkpoint-120" in proc.stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    _same_as_run_dir(results)
    by_name = {a["name"]: a for a in results["adapters"]}
    assert [(by_name[n]["source"], by_name[n]["external"]) for n in COLUMNS] == [
        ("run-dir", False), ("peft", True), ("checkpoint", True), ("merged", True), ("hub-adapter", True)]
    assert by_name["merged"]["kind"] == "merged" and by_name["tiny-adapter"]["base_model"] == "local/tiny-base"
    assert all(len(by_name[n]["weights_sha256"]) == 64 for n in COLUMNS)


def test_every_kind_gives_the_run_dirs_outputs_with_the_plugin(kinds: list[str], hub_cache: Path,
                                                               pytester: pytest.Pytester,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\n")
    battery(pytester.path)
    out = pytester.path / "r.json"
    args = [a for k in kinds for a in ("--adapter", k)]
    for key, value in _hub_env(hub_cache).items():
        monkeypatch.setenv(key, value)  # pytester's subprocess inherits the environment
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-m", "probes", *args, "--battery", "mini.yaml",
                                           "--probe-out", str(out), "--probe-no-cache", "--probe-device", "cpu",
                                           timeout=600)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 4 * len(COLUMNS), result.stdout.str()
    result.stdout.fnmatch_lines(["*mini*trainer-out-checkpoint-60*"])
    _same_as_run_dir(json.loads(out.read_text(encoding="utf-8")))


def test_two_bases_in_one_session_one_load_each(demo_adapter: Path, peft_folder: Path, narrow_adapter: Path,
                                                narrow_base: Path, tiny_base: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.probe.engines import hf
    from evalsuite.probe.runner import ProbeOptions, execute, plan_probes

    loads: list[str] = []
    real = hf._load_base
    monkeypatch.setattr(hf, "_load_base", lambda base, *a: loads.append(base) or real(base, *a))
    options = ProbeOptions(batteries=[str(battery(tmp_path))], include_base=True, use_cache=False, device="cpu")
    run = execute(plan_probes([demo_adapter, narrow_adapter, peft_folder], options))
    assert sorted(loads) == sorted([str(tiny_base.resolve()), str(narrow_base.resolve())])  # one load per base
    names = [a.name for a in run.results.adapters]
    assert names == ["base-tiny-base", "demo", "peft-plain", "base-narrow-base", "narrow-adapter"]
    outputs = outputs_by_column(run.results.to_dict())
    assert outputs["peft-plain"] == outputs["demo"] and set(outputs) == set(names)


def test_two_bases_one_results_file_and_a_report_with_both(demo_adapter: Path, narrow_adapter: Path,
                                                           narrow_base: Path, tiny_base: Path,
                                                           tmp_path: Path) -> None:
    out, md = tmp_path / "results.json", tmp_path / "report.md"
    proc = _cli("probe", str(demo_adapter), str(narrow_adapter), "--base", "--battery", str(battery(tmp_path)),
                "--out", str(out), "--no-cache", "--device", "cpu")
    assert proc.returncode in (0, 1), proc.stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    assert {a["base_model"] for a in results["adapters"]} == {str(tiny_base.resolve()), str(narrow_base.resolve())}
    report = _cli("report", str(out), "-o", str(tmp_path / "report.html"), "--markdown", str(md))
    assert report.returncode == 0, report.stderr
    text = md.read_text(encoding="utf-8")
    assert "on 2 base models" in text and str(narrow_base.resolve()) in text and str(tiny_base.resolve()) in text
    assert "narrow-adapter" in text and "external" in text  # the provenance table shows the peft-saved column
