"""Benchmarks on a real model, SmolLM2-135M-Instruct (``evalsuite.fixtures.smollm2``); every side printed.

The same prompts (the llama32-ten battery's ten open prompts), the same rendering (the model's own chat template,
default system prompt included), greedy, the same ``--max-new`` cap, each side run once in its own process:

- ``evalsuite probe FOLDER`` on the fp32 safetensors folder (HF engine, its batches);
- the naive loop: transformers ``generate`` one prompt at a time (what the seeds ran);
- lm-evaluation-harness 0.4.13 (``lm_eval --model hf``, a ``generate_until`` task of the same prompts, the chat
  template applied, the same stop and cap, the same batch size); never a project dependency: ``--lm-eval-python``
  names an interpreter that has it (``python -m venv --system-site-packages v && v/bin/pip install lm-eval==0.4.13``);
- llama.cpp through llama-cpp-python, one prompt at a time, on the wheel's Q4_1 file and on an f32 GGUF of the fp32
  folder (llama.cpp's own ``convert_hf_to_gguf.py``, staged as ``evalsuite export`` stages it; ``--llama-cpp DIR``
  or ``LLAMA_CPP_DIR``: a llama.cpp checkout or an extracted llama-cpp-python sdist);
- ``evalsuite probe`` on the same two GGUF files (its gguf engine), beside the plain llama-cpp-python loop.

Each side reports generated tokens, its generation seconds where it can tell them apart from loading (evalsuite's
results record them; the loops time themselves; lm-eval cannot, so its tokens/s is per wall second, and so is
evalsuite's beside it), wall seconds and peak RSS (the process's own ``ru_maxrss``, read with ``wait4``). The load
average is printed before and after: the machine may be shared.

    python benchmarks/real_model_bench.py [--lm-eval-python PY] [--llama-cpp DIR] [--max-new 64] [--threads N]
                                          [--json out.json]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_bench import write_lm_eval_task  # noqa: E402  (the benchmarks' one lm-eval task writer)

STOP = "<|im_end|>"


# --- the sides that run in this script's own child processes --------------------------------------------------------


def side_naive(folder: str, prompts: list[str], max_new: int) -> dict[str, Any]:
    """transformers ``generate``, one prompt at a time, greedy, stopping on the eos (<|im_end|>)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    outputs, tokens = [], 0
    with torch.inference_mode():
        warm: Any = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        model.generate(input_ids=warm["input_ids"], max_new_tokens=2)  # first-call warm-up
        t0 = time.perf_counter()
        for p in prompts:
            enc: Any = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
            ids = enc["input_ids"]
            gen = model.generate(input_ids=ids, attention_mask=enc["attention_mask"], max_new_tokens=max_new,
                                 do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            new = gen[0, ids.shape[1]:].tolist()
            tokens += len(new)
            outputs.append(tok.decode(new, skip_special_tokens=True))
    return {"tokens": tokens, "generate_s": time.perf_counter() - t0, "outputs": outputs}


def side_llama(gguf: str, texts: list[str], max_new: int) -> dict[str, Any]:
    """llama-cpp-python, one prompt at a time, greedy (temperature 0), stopping on the model's end-of-generation
    tokens. The prompt ids are the rendered text tokenized with special tokens and no added BOS (the template writes
    what the model needs); the model is constructed through evalsuite's loader, which keeps the GGUF's template away
    from llama-cpp-python's own jinja compiler, and generation is llama-cpp-python's ``create_completion``."""
    from evalsuite.gguf.llama import LlamaCpp

    threads = int(os.environ.get("EVALSUITE_GGUF_THREADS") or 0) or len(os.sched_getaffinity(0))
    llm = LlamaCpp(gguf, threads=threads).llm
    assert llm is not None
    llm.create_completion(llm.tokenize(b"hi", add_bos=False, special=True), max_tokens=2, temperature=0.0)
    outputs, tokens = [], 0
    t0 = time.perf_counter()
    for text in texts:
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        done: Any = llm.create_completion(ids, max_tokens=max_new, temperature=0.0, top_k=1)
        tokens += done["usage"]["completion_tokens"]
        outputs.append(done["choices"][0]["text"])
    return {"tokens": tokens, "generate_s": time.perf_counter() - t0, "outputs": outputs, "threads": threads}


# --- running and measuring a process ---------------------------------------------------------------------------------


def measured(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; its wall seconds, peak RSS (MiB, its own ru_maxrss from wait4) and stdout."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode not in (0, 1):  # 1: evalsuite probe with failing cases, a result
        raise SystemExit(f"{' '.join(cmd[:6])}... exited {proc.returncode}:\n{stderr[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "stdout": stdout}


def side_env(threads: int | None) -> dict[str, str]:
    """Every side's environment: this tree first on the path, and with ``--threads`` the same thread count for
    torch (OMP_NUM_THREADS) and llama.cpp (EVALSUITE_GGUF_THREADS, which the llama-cpp-python loop reads too)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if threads:
        env |= {"OMP_NUM_THREADS": str(threads), "EVALSUITE_GGUF_THREADS": str(threads)}
    return env


def run_side(name: str, payload: dict[str, Any], work: Path, env: dict[str, str]) -> dict[str, Any]:
    spec = work / f"{name}.json"
    spec.write_text(json.dumps(payload), encoding="utf-8")
    r = measured([sys.executable, __file__, "--side", name, "--spec", str(spec)], env)
    return {**json.loads(r.pop("stdout").strip().splitlines()[-1]), **r}


def run_probe(model: Path, battery: Path, out: Path, batch: int, env: dict[str, str]) -> dict[str, Any]:
    """``evalsuite probe MODEL`` (no cache, no wall-time cap per batch); tokens and generation seconds from the
    results file."""
    cmd = [sys.executable, "-m", "evalsuite.cli", "probe", str(model), "--battery", str(battery), "--no-cache",
           "--max-batch-seconds", "0", "--batch-size", str(batch), "--device", "cpu", "--out", str(out)]
    r = measured(cmd, env)
    results = json.loads(out.read_text(encoding="utf-8"))
    samples = sorted(results["samples"], key=lambda s: s["case"])
    return {"tokens": sum(s["tokens"] for s in samples), "generate_s": results["engine"]["session"]["generate_s"],
            "outputs": [s["output"] for s in samples], "wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}


def run_lm_eval(python: str, folder: Path, prompts: list[str], max_new: int, batch: int, work: Path,
                env: dict[str, str]) -> dict[str, Any]:
    data = work / "lm_eval_prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "expected": ""}) + "\n" for p in prompts), encoding="utf-8")
    tasks = work / "lm_eval_tasks"
    write_lm_eval_task(tasks, "evalsuite_real_prompts", data, max_new, STOP)
    out = work / "lm_eval_out"
    env = {**env, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = measured([python, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={folder},dtype=float32",
                  "--tasks", "evalsuite_real_prompts", "--include_path", str(tasks), "--batch_size", str(batch),
                  "--apply_chat_template", "--device", "cpu", "--output_path", str(out), "--log_samples"], env)
    samples = sorted(out.rglob("samples_evalsuite_real_prompts_*.jsonl"))[-1]
    rows = sorted((json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()),
                  key=lambda row: row["doc_id"])
    outputs = [row["filtered_resps"][0] if isinstance(row["filtered_resps"][0], str) else row["resps"][0][0]
               for row in rows]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    # lm-eval cuts the text at the stop string; the stop token itself was generated too (the other sides count it)
    tokens = sum(len(tok.encode(o, add_special_tokens=False)) + (1 if len(tok.encode(o, add_special_tokens=False))
                                                                  < max_new else 0) for o in outputs)
    return {"tokens": tokens, "outputs": outputs, "wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}


# --- set-up ----------------------------------------------------------------------------------------------------------


def prompts_of(battery: str) -> list[str]:
    from evalsuite.probe.batteries import load_battery, resolve_batteries

    return [c.prompt for c in load_battery(resolve_batteries([battery])[0]).cases]


def write_battery(prompts: list[str], max_new: int, work: Path) -> Path:
    """A battery of exactly these prompts, cases named so their order is the prompts' (p00, p01...)."""
    rows = "".join(json.dumps({"id": f"p{i:02d}", "prompt": p}) + "\n" for i, p in enumerate(prompts))
    (work / "cases.jsonl").write_text(rows, encoding="utf-8")
    battery = work / "same_prompts.yaml"
    battery.write_text(f"name: same-prompts\nscorer: stops\nmax_new_tokens: {max_new}\ncases_file: cases.jsonl\n",
                       encoding="utf-8")
    return battery


def f32_gguf(folder: Path, llama_cpp: str | None, work: Path) -> Path:
    """The fp32 folder converted by llama.cpp's converter, staged as `evalsuite export` stages a merged folder."""
    from evalsuite.export.llamacpp import convert, find_converter, stage

    target = work / "smollm2-f32.gguf"
    if not target.is_file():
        stage(folder, work / "stage")
        convert(find_converter(llama_cpp), work / "stage", target, "f32")
    return target


def rendered(folder: Path, prompts: list[str]) -> list[str]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    return [str(tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                        tokenize=False)) for p in prompts]


def same(a: list[str], b: list[str]) -> int:
    return sum(x.strip() == y.strip() for x, y in zip(a, b, strict=True))


def line(name: str, r: dict[str, Any]) -> str:
    gen = (f"{r['tokens'] / r['generate_s']:6.1f} tok/s generating ({r['generate_s']:.1f} s)" if "generate_s" in r
           else f"{'':>6} (generation not separable)        ")
    return (f"  {name:<38} {r['tokens']:>5} tokens  {gen}  {r['tokens'] / r['wall_s']:6.1f} tok/s of wall "
            f"({r['wall_s']:.1f} s)  peak RSS {r['peak_rss_mb']:,.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=("naive", "llama"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--battery", default="llama32-ten", help="whose prompts (default llama32-ten)")
    parser.add_argument("--max-new", type=int, default=64, help="new tokens per prompt, every side (default 64)")
    parser.add_argument("--batch-size", type=int, default=16, help="evalsuite and lm-eval batch size")
    parser.add_argument("--lm-eval-python", help="an interpreter with lm-eval 0.4.13 (skipped without it)")
    parser.add_argument("--llama-cpp", help="llama.cpp checkout or extracted sdist (default LLAMA_CPP_DIR)")
    parser.add_argument("--threads", type=int, help="threads for every side (torch and llama.cpp; default: theirs)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "evalsuite-real-bench")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.side:
        spec = json.loads(args.spec.read_text(encoding="utf-8"))
        fn = side_naive if args.side == "naive" else side_llama
        print(json.dumps(fn(spec["model"], spec["prompts"], spec["max_new"])))
        return 0
    return bench(args)


def bench(args: argparse.Namespace) -> int:
    from evalsuite.fixtures.smollm2 import ensure_smollm2

    args.work.mkdir(parents=True, exist_ok=True)
    model = ensure_smollm2()
    prompts = prompts_of(args.battery)
    battery = write_battery(prompts, args.max_new, args.work)
    f32 = f32_gguf(model.folder, args.llama_cpp, args.work)
    texts = rendered(model.folder, prompts)
    load = os.getloadavg()
    print(f"SmolLM2-135M-Instruct, {len(prompts)} prompts ({args.battery}), greedy, max_new_tokens {args.max_new}, "
          f"batch size {args.batch_size}, threads {args.threads or 'default'}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} / {load[1]:.2f} / "
          f"{load[2]:.2f} (1/5/15 min)")
    env = side_env(args.threads)
    f: dict[str, Any] = {"load_average_start": load, "prompts": len(prompts), "max_new_tokens": args.max_new,
                         "threads": args.threads}
    f["evalsuite_hf"] = run_probe(model.folder, battery, args.work / "probe-hf.json", args.batch_size, env)
    f["naive_hf"] = run_side("naive", {"model": str(model.folder), "prompts": prompts, "max_new": args.max_new},
                             args.work, env)
    if args.lm_eval_python:
        f["lm_eval_hf"] = run_lm_eval(args.lm_eval_python, model.folder, prompts, args.max_new, args.batch_size,
                                      args.work, env)
    for name, gguf in (("q4_1", model.gguf), ("f32", f32)):
        f[f"llama_cpp_{name}"] = run_side("llama", {"model": str(gguf), "prompts": texts, "max_new": args.max_new},
                                          args.work, env)
        f[f"evalsuite_gguf_{name}"] = run_probe(gguf, battery, args.work / f"probe-{name}.json", args.batch_size,
                                                env)
    f["load_average_end"] = os.getloadavg()
    report(f)
    if args.json:
        args.json.write_text(json.dumps(f, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


def report(f: dict[str, Any]) -> None:
    ours = f["evalsuite_hf"]
    print("\n1. HF fp32 folder (transformers)")
    print(line("evalsuite probe (HF engine, batched)", ours))
    print(line("naive generate loop (one prompt at a time)", f["naive_hf"]))
    naive = f["naive_hf"]
    ratio = (ours["tokens"] / ours["generate_s"]) / (naive["tokens"] / naive["generate_s"])
    print(f"     -> evalsuite {ratio:.2f}x the naive loop's generation tok/s; identical outputs "
          f"{same(ours['outputs'], naive['outputs'])}/{f['prompts']}")
    if "lm_eval_hf" in f:
        lm = f["lm_eval_hf"]
        print(line("lm-eval 0.4.13 (--model hf, generate_until)", lm))
        print(f"     -> lm-eval wall {lm['wall_s']:.1f} s vs evalsuite probe wall {ours['wall_s']:.1f} s: "
              f"{lm['wall_s'] / ours['wall_s']:.2f}x; identical outputs {same(ours['outputs'], lm['outputs'])}/"
              f"{f['prompts']}")
    for name, label in (("q4_1", "Q4_1 (the wheel's file)"), ("f32", "f32 (converted from the fp32 folder)")):
        raw, mine = f[f"llama_cpp_{name}"], f[f"evalsuite_gguf_{name}"]
        print(f"\n{2 if name == 'q4_1' else 3}. llama.cpp, GGUF {label}")
        print(line(f"llama-cpp-python loop ({raw['threads']} threads)", raw))
        print(line("evalsuite probe (gguf engine)", mine))
        print(f"     -> evalsuite HF fp32 generation {ours['tokens'] / ours['generate_s']:.1f} tok/s vs this llama.cpp "
              f"loop {raw['tokens'] / raw['generate_s']:.1f} tok/s; peak RSS {ours['peak_rss_mb']:,.0f} vs "
              f"{raw['peak_rss_mb']:,.0f} MiB; outputs identical to the HF fp32 side "
              f"{same(ours['outputs'], raw['outputs'])}/{f['prompts']}, evalsuite gguf vs the loop "
              f"{same(mine['outputs'], raw['outputs'])}/{f['prompts']}")
    end = f["load_average_end"]
    print(f"\nload average at the end {end[0]:.2f} / {end[1]:.2f} / {end[2]:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
