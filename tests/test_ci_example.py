"""examples/ci/evalsuite.yml cannot rot: its `run:` steps run here, in order, as GitHub would run them (bash -eo
pipefail, the workflow's env, $GITHUB_STEP_SUMMARY per step, a step after a failure runs only with `if: always()`),
on the embedded tiny model, in a temporary copy of the repository layout. `${{ }}` expressions may only be the
documented ones below; `uses:` steps are GitHub's (checkout, setup-python, cache, upload) and are not run, and `pip`
is a stub that records its arguments (evalsuite is installed here already). The adapter is the demo adapter of
tests/conftest.py (the example's config trains the same one; a test checks that), and the recorded baseline is made
from it with the documented commands, into the cache directory the workflow keeps between runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ci"
WORKFLOW = EXAMPLE / "evalsuite.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
STEP_TIMEOUT = 1200  # seconds; probing on a loaded 2-core machine is the long one


def workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return data


def known_expressions(wf: dict[str, Any], cache: str) -> dict[str, str]:
    """Every expression the example may use, with the value a run here gives it."""
    return {
        "env.EVALSUITE_CACHE": wf["env"]["EVALSUITE_CACHE"],
        "runner.os": "Linux",
        "github.run_id": "1",
        "hashFiles('examples/ci/train.yaml', 'fixtures/data/uppercase_echo_train.jsonl')": cache,
        "always()": "true",
    }


def expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [str(node["if"]).strip()] if "if" in node and not str(node["if"]).startswith("${{") else []
        return found + [e for k, v in node.items() for e in expressions(v)]
    if isinstance(node, list):
        return [e for v in node for e in expressions(v)]
    return EXPRESSION.findall(node) if isinstance(node, str) else []


def cpu_jobs(wf: dict[str, Any]) -> list[str]:
    """The jobs on GitHub's CPU runners, dependencies first."""
    jobs = {name: job for name, job in wf["jobs"].items() if job["runs-on"] == "ubuntu-latest"}
    order: list[str] = []
    while len(order) < len(jobs):
        ready = [n for n, j in jobs.items() if n not in order and all(d in order for d in _needs(j))]
        assert ready, f"job dependencies form a cycle or leave the CPU jobs: {jobs}"
        order += ready
    return order


def _needs(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def test_only_documented_expressions_and_the_demo_training_keys() -> None:
    wf = workflow()
    known = known_expressions(wf, "x")
    unknown = sorted(set(expressions(wf["jobs"])) - set(known))
    assert unknown == [], f"undocumented ${{{{ }}}} expressions in {WORKFLOW.name}: {unknown}"
    assert cpu_jobs(wf) == ["lint", "quality"]
    cache_steps = [s for s in wf["jobs"]["quality"]["steps"] if str(s.get("uses", "")).startswith("actions/cache")]
    assert cache_steps[0]["with"]["path"] == "${{ env.EVALSUITE_CACHE }}"
    # the example's config trains the demo adapter: same keys and values but for paths and its gates
    example = yaml.safe_load((EXAMPLE / "train.yaml").read_text(encoding="utf-8"))
    demo = yaml.safe_load((ROOT / "fixtures" / "configs" / "uppercase_demo.yaml").read_text(encoding="utf-8"))
    paths = {"base_model", "datasets", "output_dir", "gates"}
    assert {k: v for k, v in example.items() if k not in paths} == {k: v for k, v in demo.items() if k not in paths}
    assert [Path(d["path"]).name for d in example["datasets"]] == [Path(d["path"]).name for d in demo["datasets"]]
    assert example["output_dir"] == wf["env"]["EVALSUITE_ADAPTER"]


def pip_stub(folder: Path) -> Path:
    folder.mkdir()
    stub = folder / "pip"
    stub.write_text(f'#!/bin/sh\necho "$@" >> "{folder / "pip.log"}"\n', encoding="utf-8")
    stub.chmod(0o755)
    return folder / "pip.log"


def substitute(script: str, known: dict[str, str]) -> str:
    return EXPRESSION.sub(lambda m: known[m.group(1)], script)


def run_job(wf: dict[str, Any], name: str, repo: Path, env: dict[str, str], known: dict[str, str]
            ) -> list[dict[str, Any]]:
    """Run the job's `run:` steps; returns one record per step (name, rc, output, its summary)."""
    job = wf["jobs"][name]
    shell = wf.get("defaults", {}).get("run", {}).get("shell")
    assert shell == "bash", "the test runs steps as GitHub's `shell: bash` does"
    failed = False
    out = []
    for i, step in enumerate(job["steps"]):
        if "run" not in step:
            continue
        if failed and str(step.get("if", "")).strip() != "always()":
            out.append({"name": step.get("name", ""), "rc": None, "output": "", "summary": ""})
            continue
        summary = repo.parent / f"summary-{name}-{i}.md"
        summary.touch()
        step_env = {**env, **wf.get("env", {}), **job.get("env", {}), **step.get("env", {}),
                    "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ACTIONS": "true", "CI": "true"}
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                               substitute(step["run"], known)], cwd=repo, env=step_env, capture_output=True,
                              text=True, timeout=STEP_TIMEOUT)
        failed = failed or proc.returncode != 0
        out.append({"name": step.get("name", ""), "rc": proc.returncode, "output": proc.stdout + proc.stderr,
                    "summary": summary.read_text(encoding="utf-8")})
    return out


def layout(tmp: Path, adapter: Path) -> Path:
    """The repository as the workflow sees it after checkout: the example, the fixtures it names, the adapter."""
    repo = tmp / "repo"
    shutil.copytree(EXAMPLE, repo / "examples" / "ci")
    (repo / "fixtures").symlink_to(ROOT / "fixtures", target_is_directory=True)
    shutil.copytree(adapter, repo / "runs" / "ci")
    return repo


def record_baseline(repo: Path, env: dict[str, str], wf: dict[str, Any]) -> None:
    """The documented one-time recording, into the cache folder the workflow keeps (as a first run would)."""
    cmd_env = {**env, **wf["env"]}
    for argv in (["probe", "runs/ci", "--battery", "uppercase-echo", "--battery", "runaway-turns", "--out",
                  "trusted.json"],
                 ["baseline", "record", "trusted.json", "-o", wf["env"]["EVALSUITE_BASELINE"], "--force"]):
        proc = subprocess.run([sys.executable, "-m", "evalsuite.cli", *argv], cwd=repo, env=cmd_env,
                              capture_output=True, text=True, timeout=STEP_TIMEOUT)
        # `evalsuite probe` exits 1 when some case failed (the tiny adapter fails a few); the file is written
        assert proc.returncode in ((0, 1) if argv[0] == "probe" else (0,)), proc.stdout + proc.stderr


@pytest.mark.slow
def test_workflow_steps_run_on_the_tiny_model(demo_adapter: Path, tmp_path: Path) -> None:
    wf = workflow()
    repo = layout(tmp_path, demo_adapter)
    pip_log = pip_stub(tmp_path / "bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "EVALSUITE_CACHE"))}
    env["PATH"] = f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:{env['PATH']}"
    record_baseline(repo, env, wf)
    manifest = (repo / "runs" / "ci" / "evalsuite_manifest.json").read_bytes()
    known = known_expressions(wf, "tiny-adapter")

    lint = run_job(wf, "lint", repo, env, known)
    assert [s["rc"] for s in lint] == [0, 0, 0], lint
    sarif = json.loads((repo / "evalsuite-lint.sarif").read_text(encoding="utf-8"))
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"] == []  # the example's config is clean
    assert "evalsuite lint: examples/ci/train.yaml: 2000 rows, 0 error(s), 0 warning(s)" in lint[2]["output"]

    quality = run_job(wf, "quality", repo, env, known)
    names = [s["name"].split(" (")[0] for s in quality]
    assert all(s["rc"] == 0 for s in quality), [(s["name"], s["rc"], s["output"][-2000:]) for s in quality]
    assert (repo / "runs" / "ci" / "evalsuite_manifest.json").read_bytes() == manifest  # not trained again
    assert quality[names.index("Train the adapter when the cache has none")]["output"] == ""
    assert [line.split()[0] for line in pip_log.read_text().splitlines()] == ["install", "install"]
    assert "torch==2.13.0 .[train] pytest" in pip_log.read_text()

    probe = quality[names.index("Probe")]["output"]
    results = json.loads((repo / "results.json").read_text(encoding="utf-8"))
    n, failed = len(results["samples"]), sum(not s["passed"] for s in results["samples"])
    assert f"generated 0, from cache {n}" in probe  # the baseline run filled the kept cache
    suite = ET.parse(repo / "junit.xml").getroot().find("testsuite")
    assert suite is not None and int(suite.get("tests", -1)) == n and int(suite.get("failures", -1)) == failed
    assert any(c.get("name") == "uppercase-echo[ci-hellow-world]" for c in suite.iter("testcase"))

    gate = quality[names.index("Gate against the recorded baseline")]
    assert "gates: 3 passed, 0 failed" in gate["output"] and "::error" not in gate["output"]
    assert gate["summary"].startswith("### ✅ evalsuite gates: all 3 passed")
    assert "| PASS | uppercase-echo.accuracy: -5% | ci vs baseline ci |" in gate["summary"]
    report = quality[names.index("Report")]
    assert report["summary"].startswith("## evalsuite report") and "### Gates" in report["summary"]
    assert (repo / "report.html").stat().st_size > 10_000
    assert list((repo / wf["env"]["EVALSUITE_CACHE"]).rglob("*"))  # what actions/cache keeps
