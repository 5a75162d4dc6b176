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
    python benchmarks/probe_bench.py --real-shape [--prompts 32 --max-new 32 --naive-prompts 8]

Without ``--adapters`` three small adapters are trained on the tiny base first (demo data, 30 steps each).
``--real-shape`` runs everything on a random-init 55.6M Llama with the real Phi-3 tokenizer from
``$EVALSUITE_FIXTURES`` and adapters trained on it by ``evalsuite train`` (see ``real_shape.py``), and adds the
machine's limit: the same fp32 matmuls timed alone (bf16 too where the CPU has AVX-512 bf16). Sessions are measured
against their floor: one start-up plus each adapter's generation alone (the seconds each results file records).
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


def write_battery(prompts: list[str], max_new: int, folder: Path) -> Path:
    """A battery file of exactly these prompts and this token budget (what every side of a comparison runs)."""
    (folder / "cases.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    battery = folder / "same_prompts.yaml"
    battery.write_text("name: same-prompts\nscorer: exact_match\nexpect: upper\n"
                       f"max_new_tokens: {max_new}\ncases_file: cases.jsonl\n", encoding="utf-8")
    return battery


def bench_naive_vs_batched(adapter: Path, prompts: list[str], max_new: int, batch: int,
                           naive_n: int | None = None, limit: bool = False) -> dict[str, Any]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalsuite.probe.engines import EngineSpec
    from evalsuite.probe.engines.hf import HFEngine
    from evalsuite.probe.generation import GenerationSettings, Request
    from evalsuite.probe.runner import ProbeOptions, plan_probes

    target = plan_probes([adapter], ProbeOptions(batteries=["uppercase-echo"])).targets[0]
    stops = target.codec.generation_stop_ids
    tok = AutoTokenizer.from_pretrained(str(adapter))
    # the engine's device and dtype (fp32 on CPU, bf16 on CUDA), so both sides do the same arithmetic
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(target.base_model, dtype=dtype).to(device)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    naive_tokens, naive_out = 0, []
    warm: Any = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    with torch.inference_mode():  # first-call warm-up, as for the engine below
        model.generate(input_ids=warm["input_ids"].to(device), max_new_tokens=2)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for p in prompts[:naive_n]:  # the seeds' loop: one prompt at a time
            encoded: Any = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                   return_tensors="pt", return_dict=True)
            ids = encoded["input_ids"].to(device)
            gen = model.generate(input_ids=ids, max_new_tokens=max_new, do_sample=False, eos_token_id=stops,
                                 pad_token_id=tok.pad_token_id)
            new = gen[0, ids.shape[1]:].tolist()
            naive_tokens += len(new)
            naive_out.append(tok.decode([t for t in new if t not in stops], skip_special_tokens=True))
    naive_s = time.perf_counter() - t0
    engine = HFEngine(EngineSpec(target.base_model, {"a": target.codec}, {"a": adapter}))
    requests = [Request(({"role": "user", "content": p},), max_new) for p in prompts]
    settings = GenerationSettings(batch_size=batch, stall_seconds=None)
    engine.generate(requests[:2], "a", settings)  # first-call warm-up, as above
    t0 = time.perf_counter()
    gens = engine.generate(requests, "a", settings)
    batched_s = time.perf_counter() - t0
    batched_tokens = sum(g.tokens for g in gens)
    same = sum(a == g.text for a, g in zip(naive_out, gens, strict=False))
    workers = engine.workers
    if workers > 1:  # the same engine one batch at a time (all threads on each), both sides printed
        engine.workers = 1
        t0 = time.perf_counter()
        alone = engine.generate(requests, "a", settings)
        one_s = time.perf_counter() - t0
        engine.workers = workers
    out: dict[str, Any] = {
        "prompts": len(prompts), "naive_prompts": len(naive_out), "max_new_tokens": max_new, "batch_size": batch,
        "naive": {"seconds": naive_s, "tokens": naive_tokens, "tokens_per_s": naive_tokens / naive_s},
        "evalsuite": {"seconds": batched_s, "tokens": batched_tokens, "tokens_per_s": batched_tokens / batched_s},
        "speedup": (batched_tokens / batched_s) / (naive_tokens / naive_s), "identical_outputs": same,
        "workers": workers}
    if workers > 1:
        out["one_worker"] = {"seconds": one_s, "same_outputs": sum(a.text == b.text for a, b in
                                                                   zip(alone, gens, strict=True))}
    if limit:  # against the limit, which is the best of its passes: the best of three runs (this one included)
        recorded_s, _, calls = min([timed_run(engine, requests, settings) for _ in range(2)], key=lambda r: r[0])
        best = min(recorded_s, batched_s)
        out["evalsuite"]["best_of_3_s"] = best
        del model, engine
        out["matmul"] = bench_limit(target, adapter, requests, gens, batch, batched_tokens / best,
                                    (recorded_s, calls), workers)
    return out


def timed_run(engine: Any, requests: list[Any], settings: Any) -> tuple[float, list[Any], list[Any]]:
    """(wall seconds, generations, the run's forward passes with their shapes and seconds)."""
    from real_shape import recorded_forwards

    with recorded_forwards(engine.model) as calls:  # two hooks per pass: microseconds against its milliseconds
        t0 = time.perf_counter()
        gens = engine.generate(requests, "a", settings)
        seconds = time.perf_counter() - t0
    return seconds, gens, calls


def bench_limit(target: Any, adapter: Path, requests: list[Any], fp32: list[Any], batch: int,
                tokens_per_s: float, fp32_run: tuple[float, list[Any]], workers: int) -> dict[str, Any]:
    """The engine's matmul rate against the same matmuls timed alone, in fp32 and (AVX-512 bf16) bf16; each engine
    figure is the best of three runs, as the limit is the best of its passes. Two measures: the issue's (new tokens/s
    x 2 x linear parameters against every linear at ``[rows, in]``: prefill time counts, prefill work does not), and
    the complete one (``complete``): every matmul of every forward pass of a run, prefill included, timed alone at
    the same row counts, against the run's wall time."""
    from real_shape import complete_limit, has_avx512_bf16, linear_shapes, matmul_limit
    from transformers import AutoConfig, AutoModelForCausalLM

    from evalsuite.probe.engines import EngineSpec
    from evalsuite.probe.engines.hf import HFEngine
    from evalsuite.probe.generation import GenerationSettings

    plain = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(target.base_model))
    shapes = linear_shapes(plain)
    out_head = plain.get_output_embeddings()
    head = (out_head.in_features, out_head.out_features)
    layers = list(shapes)
    layers.remove(head)
    params = sum(i * o for i, o in shapes)
    rows = min(batch, len(requests))
    engine_gflops = tokens_per_s * 2 * params / 1e9
    out: dict[str, Any] = {"linear_params": params, "rows": rows, "engine_gflops": engine_gflops,
                           "limit_gflops": matmul_limit(shapes, rows, torch.float32)}
    out["percent_of_limit"] = 100 * engine_gflops / out["limit_gflops"]
    out["complete"] = complete_figures(complete_limit(fp32_run[1], layers, head, torch.float32), fp32_run[0],
                                       workers)
    if workers > 1:  # the same matmuls alone run as the engine's workers run them: two streams at once
        out["complete_streams"] = complete_figures(
            complete_limit(fp32_run[1], layers, head, torch.float32, streams=workers), fp32_run[0], workers)
    if has_avx512_bf16():
        engine = HFEngine(EngineSpec(target.base_model, {"a": target.codec}, {"a": adapter},
                                     options={"dtype": "bfloat16"}))
        settings = GenerationSettings(batch_size=batch, stall_seconds=None)
        engine.generate(requests[:2], "a", settings)
        runs = [timed_run(engine, requests, settings) for _ in range(3)]
        seconds, gens, calls = min(runs, key=lambda r: r[0])
        tokens = sum(g.tokens for g in gens)
        out["bf16"] = {"tokens_per_s": tokens / seconds, "engine_gflops": tokens / seconds * 2 * params / 1e9,
                       "limit_gflops": matmul_limit(shapes, rows, torch.bfloat16),
                       "same_as_fp32": sum(a.text == b.text for a, b in zip(fp32, gens, strict=True)),
                       "complete": complete_figures(complete_limit(calls, layers, head, torch.bfloat16), seconds,
                                                     engine.workers)}
    return out


def complete_figures(phases: dict[str, Any], run_s: float, workers: int = 1) -> dict[str, Any]:
    """The whole run's share of the limit (matmuls alone / the run's wall time) next to each phase's (matmuls
    alone / the phase's forward passes, the engine's Python between passes left out). With batches decoded at once
    (``workers``) passes overlap and share the cores, so only the run's share is given."""
    alone = sum(p["alone_s"] for p in phases.values())
    gflop = sum(p["gflop"] for p in phases.values())
    return {"run_s": run_s, "alone_s": alone, "gflop": gflop, "engine_gflops": gflop / run_s,
            "limit_gflops": gflop / alone, "percent_of_limit": 100 * alone / run_s, "workers": workers,
            "phases": {name: {**p, "percent_of_limit": 100 * p["alone_s"] / p["seconds"]
                              if p["seconds"] and workers == 1 else None}
                       for name, p in phases.items()}}


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: some probe cases failed, which is a result, not a crash
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return elapsed


def probe_cmd(adapters: list[Path], battery: str, out: Path) -> list[str]:
    # No wall-time cap per batch: on a loaded machine it would cut some sides short and not others.
    return [sys.executable, "-m", "evalsuite.cli", "probe", *map(str, adapters), "--battery", battery,
            "--no-cache", "--max-batch-seconds", "0", "--out", str(out)]


def session_cost(results: Path) -> dict[str, Any]:
    return dict(json.loads(results.read_text(encoding="utf-8"))["engine"]["session"])


def bench_sessions(adapters: list[Path], battery: str, tmp: Path, batch: int) -> dict[str, Any]:
    """One N-adapter session vs N sessions, and vs its floor: one start-up (a single session's wall time less the
    generation seconds its results record, averaged) plus each adapter's generation seconds alone."""
    one = timed([*probe_cmd(adapters, battery, tmp / "one.json"), "--batch-size", str(batch)])
    separate = [timed([*probe_cmd([a], battery, tmp / f"sep{i}.json"), "--batch-size", str(batch)])
                for i, a in enumerate(adapters)]
    alone = [session_cost(tmp / f"sep{i}.json") for i in range(len(adapters))]
    startup = sum(w - c["generate_s"] for w, c in zip(separate, alone, strict=True)) / len(adapters)
    floor = startup + sum(c["generate_s"] for c in alone)
    mine = session_cost(tmp / "one.json")
    return {"adapters": len(adapters), "battery": battery, "one_session_s": one, "separate_sessions_s": separate,
            "ratio": one / sum(separate), "startup_s": startup, "generate_alone_s": [c["generate_s"] for c in alone],
            "one_session_generate_s": mine["generate_s"], "floor_s": floor, "floor_ratio": one / floor,
            "peak_rss_mb": {"one_adapter": max(c["peak_rss_bytes"] or 0 for c in alone) / 2**20,
                            f"{len(adapters)}_adapters": (mine["peak_rss_bytes"] or 0) / 2**20},
            "peak_cuda_mb": {"one_adapter": max(c.get("peak_cuda_bytes") or 0 for c in alone) / 2**20,
                             f"{len(adapters)}_adapters": (mine.get("peak_cuda_bytes") or 0) / 2**20}}


LM_EVAL_TASK = """\
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{expected}}}}"
generation_kwargs:
  until: ["{stop}"]
  max_gen_toks: {max_new}
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def write_lm_eval_task(tasks: Path, task: str, data: Path, max_new: int, stop: str = "<|im_end|>") -> None:
    """An lm-eval task over a JSONL of prompts: greedy generate_until the end of turn, at most ``max_new`` tokens
    (the same settings every lm-eval side of the benchmarks runs with)."""
    tasks.mkdir(exist_ok=True)
    (tasks / f"{task}.yaml").write_text(LM_EVAL_TASK.format(task=task, data=data, max_new=max_new, stop=stop),
                                        encoding="utf-8")


def bench_lm_eval(python: str, adapter: Path, prompts: list[str], max_new: int, batch: int,
                  tmp: Path) -> dict[str, Any]:
    from evalsuite.probe.runner import ProbeOptions, plan_probes

    base = plan_probes([adapter], ProbeOptions(batteries=["uppercase-echo"])).targets[0].base_model
    data = tmp / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "expected": p.upper()}) + "\n" for p in prompts),
                    encoding="utf-8")
    tasks = tmp / "tasks"
    write_lm_eval_task(tasks, "evalsuite_same_prompts", data, max_new)
    battery = write_battery(prompts, max_new, tmp)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    lm = timed([python, "-m", "lm_eval", "--model", "hf", "--model_args",
                f"pretrained={base},peft={adapter},tokenizer={adapter},dtype=float32", "--tasks",
                "evalsuite_same_prompts", "--include_path", str(tasks), "--batch_size", str(batch),
                "--apply_chat_template", "--device", "cpu", "--output_path", str(tmp / "lm_eval_out")], env)
    ours = timed([*probe_cmd([adapter], str(battery), tmp / "ours.json"), "--batch-size", str(batch)], env)
    return {"prompts": len(prompts), "max_new_tokens": max_new, "batch_size": batch, "lm_eval_s": lm,
            "evalsuite_s": ours, "speedup": lm / ours}


def setup(args: argparse.Namespace) -> tuple[list[Path], list[str], int, str]:
    """(adapters, prompts, max new tokens, battery) of the chosen shape."""
    prompts, max_new = battery_prompts(args.battery)
    if not args.real_shape:
        return args.adapters or train_adapters(args.work), prompts, max_new, args.battery
    from real_shape import build_base, fixtures_tokenizer
    from real_shape import train_adapters as train_real

    tokenizer = fixtures_tokenizer()
    if tokenizer is None:
        raise SystemExit("--real-shape needs the Phi-3 tokenizer: set EVALSUITE_FIXTURES to the shared fixtures "
                         "folder (tokenizers/phi3-mini-4k-instruct); skipped")
    adapters = args.adapters or train_real(build_base(args.work / "real-base", tokenizer), args.work, args.n_adapters)
    prompts, max_new = prompts[:args.prompts], args.max_new or max_new
    folder = args.work / "real-battery"
    folder.mkdir(exist_ok=True)
    return adapters, prompts, max_new, str(write_battery(prompts, max_new, folder))


def print_complete(dtype: str, c: dict[str, Any]) -> None:
    phases = ", ".join(f"{name} {p['passes']} passes {p['alone_s']:.2f} of {p['seconds']:.2f} s = "
                       f"{p['percent_of_limit']:.0f}%" for name, p in c["phases"].items()
                       if p["passes"] and p["percent_of_limit"] is not None) \
        or f"not separable ({c['workers']} batches at once: their passes overlap)"
    print(f"   complete   {dtype}: every matmul of the run ({c['gflop']:.0f} GFLOP, prefill included) alone "
          f"{c['alone_s']:.2f} s of the run's {c['run_s']:.2f} s -> {c['percent_of_limit']:.0f}% "
          f"({c['engine_gflops']:.1f} of {c['limit_gflops']:.1f} GFLOPS); forward passes only: {phases}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapters", nargs="+", type=Path, help="run dirs (default: train three, --real-shape four)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "evalsuite-bench")
    parser.add_argument("--battery", default="uppercase-echo")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lm-eval-python", help="a python that has lm-eval installed (skipped without it)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--real-shape", action="store_true", help="a random-init 55.6M Llama on the Phi-3 tokenizer")
    parser.add_argument("--prompts", type=int, default=100, help="--real-shape: the first N prompts of --battery")
    parser.add_argument("--max-new", type=int, help="--real-shape: new tokens per prompt (default: the battery's)")
    parser.add_argument("--naive-prompts", type=int, help="run the naive loop on the first N prompts only")
    parser.add_argument("--n-adapters", type=int, default=4, help="--real-shape: adapters to train")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    adapters, prompts, max_new, battery = setup(args)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    figures: dict[str, Any] = {"threads": threads, "shape": "real" if args.real_shape else "tiny",
                               "load_average": os.getloadavg()[0]}
    print(f"{'real-shape 55.6M' if args.real_shape else 'tiny'} base, {len(prompts)} prompts, max_new_tokens "
          f"{max_new}, OMP_NUM_THREADS {threads}, load average {os.getloadavg()[0]:.1f}")

    r = figures["tokens_per_s"] = bench_naive_vs_batched(adapters[0], prompts, max_new, args.batch_size,
                                                         args.naive_prompts, limit=args.real_shape)
    print(f"\n1. tokens/s   naive per-prompt loop ({r['naive_prompts']} prompts): {r['naive']['tokens']} tokens in "
          f"{r['naive']['seconds']:.1f} s = {r['naive']['tokens_per_s']:.0f} tok/s")
    print(f"              evalsuite batched (bs {args.batch_size}): {r['evalsuite']['tokens']} tokens in "
          f"{r['evalsuite']['seconds']:.1f} s = {r['evalsuite']['tokens_per_s']:.0f} tok/s  -> {r['speedup']:.1f}x "
          f"(target >= 5x; identical outputs {r['identical_outputs']}/{r['naive_prompts']})")
    if "one_worker" in r:
        o = r["one_worker"]
        print(f"   workers    {r['workers']} batches at once {r['evalsuite']['seconds']:.1f} s vs one at a time "
              f"{o['seconds']:.1f} s -> {o['seconds'] / r['evalsuite']['seconds']:.2f}x (same outputs "
              f"{o['same_outputs']}/{r['prompts']})")
    if "matmul" in r:
        m = r["matmul"]
        print(f"   matmul     engine {m['engine_gflops']:.1f} GFLOPS (best of 3 runs, tok/s x 2 x "
              f"{m['linear_params'] / 1e6:.1f}M) vs "
              f"the same fp32 matmuls alone at [{m['rows']}, in]: {m['limit_gflops']:.1f} GFLOPS -> "
              f"{m['percent_of_limit']:.0f}% (target >= 80%)")
        print_complete("fp32", m["complete"])
        if "complete_streams" in m:
            print_complete(f"fp32, alone as {r['workers']} streams of 1 thread", m["complete_streams"])
        if "bf16" in m:
            b = m["bf16"]
            print(f"   bf16       engine {b['tokens_per_s']:.0f} tok/s = {b['engine_gflops']:.1f} GFLOPS; bf16 matmuls "
                  f"alone {b['limit_gflops']:.1f} GFLOPS; outputs equal to fp32 {b['same_as_fp32']}/{r['prompts']}")
            print_complete("bf16", b["complete"])

    s = figures["sessions"] = bench_sessions(adapters, battery, args.work, args.batch_size)
    n = s["adapters"]
    each = " + ".join(f"{x:.1f}" for x in s["separate_sessions_s"])
    print(f"\n2. sessions   {n} separate `evalsuite probe X`: {each} = {sum(s['separate_sessions_s']):.1f} s")
    print(f"              one `evalsuite probe` of all {n}:  {s['one_session_s']:.1f} s  -> ratio {s['ratio']:.2f}")
    print(f"   floor      one start-up {s['startup_s']:.1f} s + generation alone "
          f"{' + '.join(f'{x:.1f}' for x in s['generate_alone_s'])} = {s['floor_s']:.1f} s -> session/floor "
          f"{s['floor_ratio']:.2f}x (target <= 1.05x)")
    peak = s["peak_rss_mb"]
    print(f"   memory     peak RSS: one adapter {peak['one_adapter']:.0f} MB, {n} adapters "
          f"{peak[f'{n}_adapters']:.0f} MB")

    if args.lm_eval_python:
        e = figures["lm_eval"] = bench_lm_eval(args.lm_eval_python, adapters[0], prompts, max_new, args.batch_size,
                                               args.work)
        print(f"\n3. lm-eval    lm_eval --model hf (peft, generate_until, bs {args.batch_size}): "
              f"{e['lm_eval_s']:.1f} s")
        print(f"              evalsuite probe, same prompts and settings:        {e['evalsuite_s']:.1f} s  -> "
              f"{e['speedup']:.1f}x faster (target >= 2x)")
    else:
        print("\n3. lm-eval    skipped: pass --lm-eval-python PY (an interpreter with lm-eval installed)")
    figures["load_average_end"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
