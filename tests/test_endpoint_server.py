"""The endpoint column against a real OpenAI-compatible server: llama-cpp-python's (``python -m llama_cpp.server``)
serving the GGUF exported from the trained demo adapter, and SmolLM2-135M-Instruct's (the real-model fixture), on a
free loopback port.

- `evalsuite probe RUN_DIR FILE.gguf URL`: the endpoint agrees with the GGUF file run in-process on >= 95% of greedy
  outputs of the uppercase-echo and runaway batteries, finish reasons included, and the report shows the three
  columns side by side;
- `evalsuite drift RUN_DIR --endpoint URL` on a server whose model ends its answers with a turn header it does not
  stop on (the broken-terminator adapter, exported): endpoint-no-stop, naming the header; on the demo: none;
- the server killed mid-run: one error, the answers received before it cached, a rerun on the restarted server
  sends only the rest.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ROOT, run_cli
from endpoint_support import LlamaServer, require_server_package
from gguf_support import THREADS

from evalsuite.results.io import load_results
from evalsuite.results.schema import Results

pytestmark = pytest.mark.slow
TIMEOUT = 600
BATTERIES = ("--battery", "uppercase-echo", "--battery", "runaway-turns")


def serve(gguf: Path, folder: Path) -> Iterator[LlamaServer]:
    server = LlamaServer(gguf, folder / "server.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def demo_server(demo_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    yield from serve(demo_gguf, tmp_path_factory.mktemp("demo-server"))


def agreement(results: Results, a: str, b: str) -> tuple[float, list[str]]:
    other = {(s.battery, s.case): s for s in results.samples if s.adapter == b}
    pairs = [(s, other[(s.battery, s.case)]) for s in results.samples if s.adapter == a]
    assert pairs
    differing = [f"{x.case}: {x.output!r} {x.finish_reason} vs {y.output!r} {y.finish_reason}" for x, y in pairs
                 if (x.output, x.finish_reason) != (y.output, y.finish_reason)]
    return 1 - len(differing) / len(pairs), differing


@pytest.fixture(scope="module")
def three_columns(demo_adapter: Path, demo_gguf: Path, demo_server: LlamaServer,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("three") / "results.json"
    done = run_cli("probe", demo_adapter, demo_gguf, demo_server.url, *BATTERIES, "--out", out, timeout=TIMEOUT,
                   env=THREADS)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return out


def test_the_endpoint_agrees_with_the_gguf_file(three_columns: Path, demo_server: LlamaServer) -> None:
    results = load_results(three_columns)
    names = [a.name for a in results.adapters]
    endpoint = next(a for a in results.adapters if a.kind == "endpoint")
    assert names == ["demo", "demo.gguf", endpoint.name] and endpoint.path == demo_server.url
    assert endpoint.provenance is not None and endpoint.provenance["served_model"].endswith("demo.gguf")
    assert endpoint.provenance["server"]["header"] == "uvicorn"  # llama-cpp-python's server reports no version
    for battery in ("uppercase-echo", "runaway-turns"):
        assert results.samples_for(battery, endpoint.name)
    share, differing = agreement(results, "demo.gguf", endpoint.name)
    assert share >= 0.95, differing
    column = results.engine.settings["columns"][endpoint.name]
    assert column["url"] == demo_server.url and column["concurrency"] == 4
    assert column["api_key_env"] == "EVALSUITE_API_KEY"  # the variable's name only (no key is set here)


def test_the_report_shows_the_three_columns_side_by_side(three_columns: Path, tmp_path: Path) -> None:
    html, md = tmp_path / "report.html", tmp_path / "report.md"
    done = run_cli("report", three_columns, "-o", html, "--markdown", md, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    results = load_results(three_columns)
    endpoint = next(a.name for a in results.adapters if a.kind == "endpoint")
    header = next(line for line in md.read_text().splitlines() if line.startswith("| metric |"))
    cells = [c.strip() for c in header.strip().strip("|").split("|")]
    assert cells[1].startswith("demo") and cells[2:] == ["demo.gguf", endpoint]  # one table, three columns
    assert endpoint in html.read_text()


def test_drift_against_the_demo_server_finds_no_stop_problem(demo_adapter: Path, demo_server: LlamaServer) -> None:
    done = run_cli("drift", demo_adapter, "--endpoint", demo_server.url, *BATTERIES, "--format", "json",
                   "--gate", "drift.agreement >= 0.9", timeout=TIMEOUT, env=THREADS)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert "endpoint-no-stop" not in {f["rule"] for f in report["findings"]}
    assert report["dynamic"]["agreement"] >= 0.9 and report["gates"][0].startswith("PASS")
    # llama-cpp-python's server has no /apply-template: the check says it was not possible
    assert any("template check not possible" in n for n in report["notes"])


@pytest.fixture(scope="module")
def runaway_gguf(broken_terminator_adapter: Path, llama_cpp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runaway-gguf") / "runaway.gguf"
    done = run_cli("export", broken_terminator_adapter, "--gguf", out, "--llama-cpp", llama_cpp, timeout=TIMEOUT)
    assert out.is_file(), done.stdout + done.stderr  # export exits 1: its own drift check flags the template
    return out


def test_a_server_that_stops_on_the_wrong_token_is_caught_with_the_cause(
        broken_terminator_adapter: Path, runaway_gguf: Path, tmp_path: Path) -> None:
    """The seeds' runaway: the model ends its answer with "<|im_start|>assistant", which training stops at (a turn
    header) and the server does not (it stops on <|im_end|> and <|endoftext|>)."""
    server = LlamaServer(runaway_gguf, tmp_path / "server.log").start()
    try:
        done = run_cli("drift", broken_terminator_adapter, "--endpoint", server.url, "--battery", "runaway-turns",
                       "--format", "json", timeout=TIMEOUT, env=THREADS)
    finally:
        server.stop()
    assert done.returncode == 1, done.stderr[-3000:]
    report = json.loads(done.stdout)
    finding = next(f for f in report["findings"] if f["rule"] == "endpoint-no-stop")
    assert finding["severity"] == "error" and "does not stop where training stops" in finding["message"]
    assert "into the turn header '<|im_start|>assistant\\n'" in finding["message"], finding
    assert finding["examples"] and "max-tokens" not in finding["examples"][0].split(" vs ")[0]


def test_a_server_killed_mid_run_loses_nothing(demo_gguf: Path, tmp_path: Path) -> None:
    require_server_package()
    server = LlamaServer(demo_gguf, tmp_path / "server.log").start()
    out = tmp_path / "results.json"
    argv = [sys.executable, "-m", "evalsuite.cli", "probe", server.url, "--battery", "uppercase-echo",
            "--concurrency", "1", "--out", str(out)]
    probe = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, **THREADS})
    try:
        deadline = time.monotonic() + TIMEOUT
        while server.requests_seen() < 10 and probe.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()
        _, err = probe.communicate(timeout=TIMEOUT)
    finally:
        probe.kill() if probe.poll() is None else None
        server.stop()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert probe.returncode == 2 and len(errors) == 1 and "Traceback" not in err, err[-3000:]
    found = re.search(r"(\d+) of 100 generation\(s\) finished before it", errors[0])
    assert found and server.url in errors[0], errors[0]
    answered = int(found.group(1))
    # The server logs an answer as it starts sending it: the one in flight at the kill may not have arrived whole.
    assert answered >= 9 and server.requests_seen() - answered in (0, 1)
    assert f"sends only the {100 - answered} missing" in errors[0] and not out.exists()
    restarted = LlamaServer(demo_gguf, tmp_path / "server2.log", port=server.port).start()
    try:
        done = run_cli(*argv[3:], timeout=TIMEOUT, env=THREADS)
    finally:
        restarted.stop()
    assert done.returncode in (0, 1), done.stderr[-3000:]
    settings: dict[str, Any] = load_results(out).engine.settings
    assert (settings["cached"], settings["generated"]) == (answered, 100 - answered)
    assert restarted.requests_seen() == 100 - answered


def test_a_real_model_served_agrees_with_its_gguf_file(smollm2: Any, tmp_path: Path) -> None:
    """SmolLM2-135M-Instruct's Q4_1 GGUF (the real-model fixture), served and run in-process. Greedy means no
    repetition penalty: llama-cpp-python's server applies 1.1 unless told otherwise, which changed 24 of these 32
    answers (at 24 tokens) before the engine sent the neutral value."""
    real_model_gguf = Path(smollm2.gguf)
    out = tmp_path / "results.json"
    with_server = serve(real_model_gguf, tmp_path)
    server = next(with_server)
    try:
        done = run_cli("probe", real_model_gguf, server.url, "--battery", "runaway-turns", "--max-new-tokens", "16",
                       "--out", out, timeout=TIMEOUT, env=THREADS)
    finally:
        with_server.close()
    assert done.returncode in (0, 1), done.stderr[-3000:]
    results = load_results(out)
    endpoint = next(a.name for a in results.adapters if a.kind == "endpoint")
    share, differing = agreement(results, real_model_gguf.name, endpoint)
    assert share >= 0.95, differing
