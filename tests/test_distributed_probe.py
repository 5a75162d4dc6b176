"""Data-parallel probing: `evalsuite probe --num-processes 2` on two CPU processes (gloo) gives the same results as
one process (greedy decoding, the same batches), in one results file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_train import train, write_config

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_FIELDS = ("output", "finish_reason", "tokens", "passed", "score", "expected", "details")


def probe(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same kernels and thread count in both runs
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "evalsuite.cli", "probe", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def by_case(results: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(s["battery"], s["case"], s["adapter"]): {k: s.get(k) for k in SAMPLE_FIELDS} for s in results["samples"]}


@pytest.mark.slow
def test_two_processes_give_the_single_process_results(tmp_path: Path, tiny_base: Path) -> None:
    run = train(write_config(tmp_path, tiny_base, max_steps=4))
    common = [str(run), "--base", "--battery", "uppercase-echo", "--no-cache", "--batch-size", "8"]
    single = probe(*common, "--out", str(tmp_path / "single.json"))
    assert single.returncode in (0, 1), single.stderr[-3000:]
    out_dir = tmp_path / "dp"
    out_dir.mkdir()
    double = probe(*common, "--out", str(out_dir / "results.json"), "--num-processes", "2")
    assert double.returncode == single.returncode, double.stdout[-2000:] + double.stderr[-3000:]

    one = json.loads((tmp_path / "single.json").read_text())
    two = json.loads((out_dir / "results.json").read_text())
    assert [p.name for p in out_dir.iterdir()] == ["results.json"]  # one file, written once
    assert one["engine"]["processes"] == 1 and two["engine"]["processes"] == 2
    a, b = by_case(one), by_case(two)
    assert len(a) == 200 and a.keys() == b.keys()
    assert a == b
    assert one["metrics"] == two["metrics"]
    assert len({s["output"] for s in a.values()}) > 10  # real, varied generations: the comparison has teeth
    # the verdict and summary come once, from the launching process
    assert double.stdout.count("results: ") == 1 and double.stdout.count("uppercase-echo") == 2


def test_bad_input_fails_before_launching(tmp_path: Path) -> None:
    done = probe(str(tmp_path / "no-such-run"), "--num-processes", "2", "--out", str(tmp_path / "r.json"),
                 timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no such run dir" in done.stderr and "accelerate" not in done.stderr
    assert not (tmp_path / "r.json").exists()
