"""Probe-runner benchmarks on the embedded tiny model; every comparison prints both sides.

1. Tokens/s: evalsuite's batched engine vs a naive per-prompt ``generate`` loop (what the seeds ran: render one
   prompt, generate, decode, next), same adapter, same prompts, same greedy settings, generation time only.
2. Sessions: ``evalsuite probe A B C`` (one process: base loaded once, all columns in shared batches) vs three
   separate ``evalsuite probe X`` processes, wall time including start-up, no generation cache.
3. lm-evaluation-harness: ``lm_eval --model hf --model_args pretrained=BASE,peft=ADAPTER`` with a custom
   ``generate_until`` task holding the same prompts (chat template applied, same stop, same max tokens, same batch
   size) vs ``evalsuite probe ADAPTER`` on a battery of the same prompts; wall time of each process.
   lm-eval is never a project dependency: pass ``--lm-eval-python`` pointing at an interpreter that has it
   (e.g. a venv made with ``python -m venv --system-site-packages v && v/bin/pip install lm-eval``).

    python benchmarks/probe_bench.py [--adapters A B C] [--lm-eval-python PY] [--json bench.json]

Without ``--adapters`` three small adapters are trained on the tiny base first (demo data, 30 steps each).
Set ``OMP_NUM_THREADS`` for stable numbers on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch


def train_adapters(root: Path, n: int = 3, steps: int = 30) -> list[Path]:
    from evalsuite.fixtures.tiny_model import ensure_tiny_base

    from evalsuite.config.load import load_config
    from evalsuite.demo import demo_config_path
    from evalsuite.train.backends import TrainOptions, get_backend

    base = ensure_tiny_base()
    out = []
    for i in range(n):
        run = root / f"bench{i}"
        if not (run / "evalsuite_manifest.json").exists():
            config = replace(load_config(demo_config_path()), base_model=str(base), max_steps=steps, seed=100 + i,
                             save_steps=None)
            get_backend("trl").train(config, run, TrainOptions(overwrite=True))
        out.append(run)
    return out


def battery_prompts(name: str) -> tuple[list[str], int]:
    from evalsuite.probe.batteries import load_battery, resolve_batteries

    b = load_battery(resolve_batteries([name])[0])
    return [c.prompt for c in b.cases], b.max_new_tokens


def bench_naive_vs_batched(adapter: Path, prompts: list[str], max_new: int, batch: int) -> dict[str, Any]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalsuite.probe.engines import EngineSpec
    from evalsuite.probe.engines.hf import HFEngine
    from evalsuite.probe.generation import GenerationSettings, Request
    from evalsuite.probe.runner import ProbeOptions, plan_probes

    target = plan_probes([adapter], ProbeOptions(batteries=["uppercase-echo"])).targets[0]
    stops = target.codec.generation_stop_ids
    tok = AutoTokenizer.from_pretrained(str(adapter))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(target.base_model), str(adapter)).eval()
    naive_tokens, naive_out = 0, []
    warm: Any = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    with torch.inference_mode():  # first-call warm-up, as for the engine below
        model.generate(input_ids=warm["input_ids"], max_new_tokens=2)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for p in prompts:  # the seeds' loop: one prompt at a time
            encoded: Any = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                   return_tensors="pt", return_dict=True)
            ids = encoded["input_ids"]
            gen = model.generate(input_ids=ids, max_new_tokens=max_new, do_sample=False, eos_token_id=stops,
                                 pad_token_id=tok.pad_token_id)
            new = gen[0, ids.shape[1]:].tolist()
            naive_tokens += len(new)
            naive_out.append(tok.decode([t for t in new if t not in stops], skip_special_tokens=True))
    naive_s = time.perf_counter() - t0
    engine = HFEngine(EngineSpec(target.base_model, {"a": target.codec}, {"a": adapter}))
    requests = [Request(({"role": "user", "content": p},), max_new) for p in prompts]
    engine.generate(requests[:2], "a", GenerationSettings(batch_size=batch))  # first-call warm-up, as above
    t0 = time.perf_counter()
    gens = engine.generate(requests, "a", GenerationSettings(batch_size=batch))
    batched_s = time.perf_counter() - t0
    batched_tokens = sum(g.tokens for g in gens)
    same = sum(a == g.text for a, g in zip(naive_out, gens, strict=True))
    return {"prompts": len(prompts), "max_new_tokens": max_new, "batch_size": batch,
            "naive": {"seconds": naive_s, "tokens": naive_tokens, "tokens_per_s": naive_tokens / naive_s},
            "evalsuite": {"seconds": batched_s, "tokens": batched_tokens, "tokens_per_s": batched_tokens / batched_s},
            "speedup": (batched_tokens / batched_s) / (naive_tokens / naive_s), "identical_outputs": same}


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: some probe cases failed, which is a result, not a crash
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return elapsed


def probe_cmd(adapters: list[Path], battery: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "evalsuite.cli", "probe", *map(str, adapters), "--battery", battery,
            "--no-cache", "--out", str(out)]


def bench_sessions(adapters: list[Path], battery: str, tmp: Path) -> dict[str, Any]:
    one = timed(probe_cmd(adapters, battery, tmp / "one.json"))
    separate = [timed(probe_cmd([a], battery, tmp / f"sep{i}.json")) for i, a in enumerate(adapters)]
    return {"adapters": len(adapters), "battery": battery, "one_session_s": one, "separate_sessions_s": separate,
            "ratio": one / sum(separate)}


LM_EVAL_TASK = """\
task: evalsuite_same_prompts
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{expected}}}}"
generation_kwargs:
  until: ["<|im_end|>"]
  max_gen_toks: {max_new}
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def bench_lm_eval(python: str, adapter: Path, prompts: list[str], max_new: int, batch: int,
                  tmp: Path) -> dict[str, Any]:
    from evalsuite.probe.runner import ProbeOptions, plan_probes

    base = plan_probes([adapter], ProbeOptions(batteries=["uppercase-echo"])).targets[0].base_model
    data = tmp / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "expected": p.upper()}) + "\n" for p in prompts),
                    encoding="utf-8")
    tasks = tmp / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "evalsuite_same_prompts.yaml").write_text(LM_EVAL_TASK.format(data=data, max_new=max_new),
                                                       encoding="utf-8")
    (tmp / "cases.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    battery = tmp / "same_prompts.yaml"
    battery.write_text("name: same-prompts\nscorer: exact_match\nexpect: upper\n"
                       f"max_new_tokens: {max_new}\ncases_file: cases.jsonl\n", encoding="utf-8")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    lm = timed([python, "-m", "lm_eval", "--model", "hf", "--model_args",
                f"pretrained={base},peft={adapter},tokenizer={adapter},dtype=float32", "--tasks",
                "evalsuite_same_prompts", "--include_path", str(tasks), "--batch_size", str(batch),
                "--apply_chat_template", "--device", "cpu", "--output_path", str(tmp / "lm_eval_out")], env)
    ours = timed([*probe_cmd([adapter], str(battery), tmp / "ours.json"), "--batch-size", str(batch)], env)
    return {"prompts": len(prompts), "max_new_tokens": max_new, "batch_size": batch, "lm_eval_s": lm,
            "evalsuite_s": ours, "speedup": lm / ours}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapters", nargs=3, type=Path, help="three run dirs (default: train three)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "evalsuite-bench")
    parser.add_argument("--battery", default="uppercase-echo")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lm-eval-python", help="a python that has lm-eval installed (skipped without it)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    adapters = args.adapters or train_adapters(args.work)
    prompts, max_new = battery_prompts(args.battery)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    figures: dict[str, Any] = {"threads": threads}
    print(f"tiny base, {len(prompts)} prompts of {args.battery}, max_new_tokens {max_new}, OMP_NUM_THREADS {threads}")

    r = figures["tokens_per_s"] = bench_naive_vs_batched(adapters[0], prompts, max_new, args.batch_size)
    print(f"\n1. tokens/s   naive per-prompt loop: {r['naive']['tokens']} tokens in {r['naive']['seconds']:.1f} s "
          f"= {r['naive']['tokens_per_s']:.0f} tok/s")
    print(f"              evalsuite batched (bs {args.batch_size}): {r['evalsuite']['tokens']} tokens in "
          f"{r['evalsuite']['seconds']:.1f} s = {r['evalsuite']['tokens_per_s']:.0f} tok/s  -> {r['speedup']:.1f}x "
          f"(target >= 5x; identical outputs {r['identical_outputs']}/{r['prompts']})")

    s = figures["sessions"] = bench_sessions(adapters, args.battery, args.work)
    print(f"\n2. sessions   3 separate `evalsuite probe X`: {' + '.join(f'{x:.1f}' for x in s['separate_sessions_s'])}"
          f" = {sum(s['separate_sessions_s']):.1f} s")
    print(f"              one `evalsuite probe A B C`:    {s['one_session_s']:.1f} s  -> ratio {s['ratio']:.2f} "
          "(target <= 0.5)")

    if args.lm_eval_python:
        e = figures["lm_eval"] = bench_lm_eval(args.lm_eval_python, adapters[0], prompts, max_new, args.batch_size,
                                               args.work)
        print(f"\n3. lm-eval    lm_eval --model hf (peft, generate_until, bs {args.batch_size}): "
              f"{e['lm_eval_s']:.1f} s")
        print(f"              evalsuite probe, same prompts and settings:        {e['evalsuite_s']:.1f} s  -> "
              f"{e['speedup']:.1f}x faster (target >= 2x)")
    else:
        print("\n3. lm-eval    skipped: pass --lm-eval-python PY (an interpreter with lm-eval installed)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
