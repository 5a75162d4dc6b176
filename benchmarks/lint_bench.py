"""Benchmark: full `evalsuite lint` throughput next to plain batch encoding and a TRL-style preparation.

On ~20,000 alpaca-style conversations built from the real alpaca fixtures (cycled), with the real Phi-3 tokenizer
and its chat template, measured side by side in one process:

- plain batch encoding: pre-rendered texts (rendering not timed) through ``tokenizers.Tokenizer.encode_batch``,
  ids materialised as Python lists; and the same through transformers' fast tokenizer ``tok(texts)``;
- TRL-style: ``datasets.Dataset.map`` calling ``tokenizer.apply_chat_template(messages, tokenize=True,
  return_dict=True)`` per example (what TRL 1.x's SFT preparation does), dataset creation not timed;
- full lint: ``run_lint`` on the loaded samples (every rule, every row), and end to end including reading the file;
- cold start: ``python -m evalsuite.cli lint`` on a 10-row file, wall time of a fresh process.

Goals (issue 3): full lint >= 2.5x the TRL-style preparation and >= 0.7x plain batch encoding; cold start <= 1.5 s.

    python benchmarks/lint_bench.py [--rows 20000] [--repeat 3]

Prints one line per measurement (rows/s, best of --repeat interleaved rounds) and the ratios. Needs the shared fixtures
(``EVALSUITE_FIXTURES``) and transformers + datasets for the comparison rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("EVALSUITE_FIXTURES", ROOT.parent / "shared" / "fixtures"))
PHI3 = FIXTURES / "tokenizers" / "phi3-mini-4k-instruct"
PLAIN = "plain batch encoding (tokenizers encode_batch + ids)"
LINT = "full lint (run_lint on loaded rows)"
TRL = "TRL-style apply_chat_template in datasets.map"


def alpaca_rows(n: int) -> list[dict[str, str]]:
    src = FIXTURES / "datasets" / "alpaca"
    recs: list[dict[str, Any]] = json.loads((src / "llamafactory__alpaca_en_demo.json").read_text("utf-8"))
    for line in (src / "stanford_alpaca__seed_tasks.jsonl").read_text("utf-8").splitlines():
        task = json.loads(line)
        recs += [{"instruction": task["instruction"], **inst} for inst in task["instances"]]
    recs += json.loads((src / "axolotl__fixtures_alpaca.json").read_text("utf-8"))
    rows = [{"instruction": r["instruction"], "input": r.get("input") or "", "output": r["output"]} for r in recs]
    return [rows[i % len(rows)] for i in range(n)]


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-trl", action="store_true", help="leave out the datasets.map comparison")
    args = ap.parse_args(argv)
    if not PHI3.is_dir():
        print(f"fixtures not found at {FIXTURES} (set EVALSUITE_FIXTURES)", file=sys.stderr)
        return 2
    from evalsuite.chat.template import render
    from evalsuite.lint.runner import run_lint
    from evalsuite.lint.setup import from_options

    tmp = Path(tempfile.mkdtemp(prefix="lint-bench-"))
    data = tmp / "alpaca.jsonl"
    rows = alpaca_rows(args.rows)
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    n = len(rows)
    results: dict[str, float] = {}

    setup = from_options(str(PHI3), [str(data)], max_length=4096)
    tk, template = setup.tk, setup.template
    assert template is not None
    convs = [s.messages for s in setup.samples]
    variables = tk.template_variables()
    texts = [render(template, c or (), special_tokens=variables).text for c in convs]

    methods: dict[str, Callable[[], Any]] = {
        "plain batch encoding (tokenizers encode_batch + ids)":
            lambda: [e.ids for e in tk.tokenizer.encode_batch(texts, add_special_tokens=False)],
        "full lint (run_lint on loaded rows)": lambda: run_lint(setup),
        "full lint end to end (read file + lint)":
            lambda: run_lint(from_options(str(PHI3), [str(data)], max_length=4096)),
    }
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(PHI3))
        hf.chat_template = template
        methods["plain batch encoding (transformers tok(texts))"] = \
            lambda: hf(texts, add_special_tokens=False)["input_ids"]
        if not args.skip_trl:
            import datasets

            datasets.disable_progress_bars()
            ds = datasets.Dataset.from_list([{"messages": list(c or ())} for c in convs])

            def trl_style() -> Any:
                return ds.map(lambda ex: dict(hf.apply_chat_template(ex["messages"], tokenize=True,  # type: ignore[arg-type]
                                                                     return_dict=True)),
                              remove_columns=["messages"], load_from_cache_file=False, keep_in_memory=True)

            methods[TRL] = trl_style
    except ImportError as e:
        print(f"(transformers/datasets comparison skipped: {e})")
    # Rounds interleave the methods so that each sees the same machine load; each keeps its best round.
    report = None
    for _ in range(args.repeat):
        for name, fn in methods.items():
            sec, out = best(fn, 1)
            results[name] = max(results.get(name, 0.0), n / sec)
            if name.startswith("full lint (run_lint"):
                report = out
    assert report is not None
    plain, lint = results[PLAIN], results[LINT]
    trl = results.get(TRL)

    small = tmp / "ten.jsonl"
    small.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:10]), encoding="utf-8")
    cold = []
    for _ in range(max(3, args.repeat)):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "evalsuite.cli", "lint", "--tokenizer", str(PHI3), "--data",
                               str(small)], capture_output=True, text=True)
        cold.append(time.perf_counter() - t)
        assert proc.returncode in (0, 1), proc.stderr

    print(f"{n} alpaca-style conversations, Phi-3 tokenizer + template, {os.cpu_count()} CPUs, "
          f"{report.stats['tokens']} tokens, {report.stats['spliced_shapes']}/{report.stats['shapes']} shapes spliced")
    for name, rate in results.items():
        print(f"  {name:<55} {rate:10,.0f} rows/s")
    print(f"  {'evalsuite lint cold start, 10-row file (median, min)':<55} {statistics.median(cold):9.2f} s "
          f"{min(cold):.2f} s")
    print(f"  full lint / plain batch encoding = {lint / plain:.2f}x (goal >= 0.7x)")
    if trl:
        print(f"  full lint / TRL-style preparation = {lint / trl:.2f}x (goal >= 2.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
