"""SQuAD on a real model: memory-planned batches and the stall guard against the fixed batch and no guard.

Runs ``evalsuite probe MODEL --battery squad --squad-n N --no-cache`` in a fresh process per side (so each peak RSS
is its own) and prints both sides of each comparison:

1. default settings (``--batch-size auto``, ``--max-batch-seconds 120``) vs ``--batch-size 64``: peak RSS (goal
   <= 2 GB) and wall time (goal: within 1.1x of batch 64), same outputs;
2. default vs ``--max-batch-seconds 0`` (no guard): same outputs (a slow model is never cut);
3. a deliberately tiny stall limit (``--max-batch-seconds 0.001``): exit 2, a message naming the option, and no
   sample scored that the model did not finish (each is ``eos``/``new-turn``/``stop-string``/``max-tokens`` at its
   full budget, or ``not-run``).

    EVALSUITE_FIXTURES=../shared/fixtures python benchmarks/squad_memory_bench.py MODEL_DIR [--n 100] [--json F]

``MODEL_DIR`` is a merged model folder (config, safetensors, tokenizer with a chat template). Heavy: four SQuAD runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIDES = {"default": [], "batch 64": ["--batch-size", "64"], "no guard": ["--max-batch-seconds", "0"],
         "tiny guard": ["--max-batch-seconds", "0.001"]}


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def run_side(model: Path, n: int, extra: list[str], out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "evalsuite.cli", "probe", str(model), "--battery", "squad", "--squad-n", str(n),
           "--no-cache", "--device", "cpu", "--out", str(out), *extra]
    before = load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1, 2) or not out.exists():
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    data = json.loads(out.read_text(encoding="utf-8"))
    session = data["engine"]["session"]
    samples = data["samples"]
    reasons: dict[str, int] = {}
    for s in samples:
        reasons[s["finish_reason"]] = reasons.get(s["finish_reason"], 0) + 1
    return {"args": extra, "exit": proc.returncode, "wall_s": wall, "load_before": before, "load_after": load(),
            "generate_s": session["generate_s"], "load_s": session["load_s"],
            "peak_rss_mb": (session["peak_rss_bytes"] or 0) / 2**20, "finish": reasons,
            "metrics": {m["name"]: m["value"] for m in data["metrics"]},
            "outputs": {s["case"]: (s["output"], s["finish_reason"]) for s in samples},
            "stdout_tail": proc.stdout[-1500:]}


def same(a: dict[str, Any], b: dict[str, Any]) -> str:
    hits = sum(a["outputs"].get(k) == v for k, v in b["outputs"].items())
    return f"{hits}/{len(b['outputs'])}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results: dict[str, Any] = {"model": str(args.model), "n": args.n, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="squad-mem-") as tmp:
        for name in ("batch 64", "default", "no guard", "tiny guard"):  # the fixed batch first: the old default
            print(f"running {name} ({' '.join(SIDES[name]) or 'default settings'}); load {load()}", flush=True)
            results[name] = run_side(args.model, args.n, SIDES[name], Path(tmp) / f"{name.replace(' ', '_')}.json")
            r = results[name]
            print(f"  exit {r['exit']}, wall {r['wall_s']:.1f} s, generate {r['generate_s']:.1f} s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB, finish {r['finish']}, load after {r['load_after']}",
                  flush=True)
    d, b, g, t = (results[k] for k in ("default", "batch 64", "no guard", "tiny guard"))
    scored_cut = [k for k, (_, reason) in t["outputs"].items() if reason == "max-tokens"]
    rows = [
        ("peak RSS", f"{b['peak_rss_mb']:,.0f} MB", f"{d['peak_rss_mb']:,.0f} MB", "<= 2,048 MB"),
        ("wall time (generate)", f"{b['wall_s']:.1f} s ({b['generate_s']:.1f} s)",
         f"{d['wall_s']:.1f} s ({d['generate_s']:.1f} s), {d['wall_s'] / b['wall_s']:.2f}x", "<= 1.1x"),
        ("same outputs as batch 64", "", same(d, b), "all"),
        ("default vs --max-batch-seconds 0: same outputs", f"{g['wall_s']:.1f} s", same(d, g), "all"),
        ("--max-batch-seconds 0.001", "", f"exit {t['exit']}, {t['finish']}, "
         f"option named: {'--max-batch-seconds' in t['stdout_tail']}, max-tokens scored: {len(scored_cut)}",
         "exit 2, none scored cut"),
    ]
    print(f"\nSQuAD n={args.n} on {args.model}:\n")
    print("| | batch 64 / other side | default (auto, stall guard 120 s) | goal |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
