"""The GPU checks of issue 19 in one run: the seeds' memory table with `evalsuite train`, and the HF probe engine.

Random-init Llama-3.2-1B and -3B shapes (tied embeddings, GQA) on a real Llama-3 tokenizer (built from the fixtures'
GPT-2-format Llama-3.2 vocabulary by ``gpu_prep.py``, with the Llama-3.2 chat template). Random weights are fine for
speed and memory, never for quality.

1. Memory table: ``evalsuite train`` (a process per setting, as a user runs it) on long chat rows truncated to the
   sequence length, LoRA r=16 on every linear layer, a few steps each. Per setting: 16-bit base vs 8-bit vs 8-bit +
   8-bit AdamW vs 4-bit NF4 (seed 000's table), and sequence length x micro-batch (seed 004's). Peak VRAM and the
   median step come from each run's manifest (``train.peak_cuda_mb``, ``train.step_time_s``), where the report's
   training table reads them.
2. Probe engine: tokens/s of the batched HF engine vs a naive per-prompt ``generate`` loop on the same GPU and dtype;
   four adapters (four of the runs above) in one ``evalsuite probe`` session vs four sessions, and vs the floor; the
   report of that session (its training table shows the four runs).

    python benchmarks/gpu_bench.py --tokenizer DIR --out OUT [--work DIR] [--deadline-s 430] [--quick]

``--quick`` runs the same flow on a tiny shape with short sequences: a CPU rehearsal of the device run. Stages run in
order of importance and each is skipped, with the reason recorded, when the deadline is near; the figures are written
to ``OUT/gpu_bench.json`` and ``OUT/gpu_bench.md`` after every stage, so a run cut short still reports what it did.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    # Llama-3.2's published configs (vocabulary from the tokenizer; no rope scaling, which changes neither speed
    # nor memory at these lengths)
    "llama-3.2-1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64},
    "llama-3.2-3b": {"hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
                     "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16},
}
STOPS = ["<|end_of_text|>", "<|eot_id|>"]


@dataclass(frozen=True)
class Setting:
    shape: str
    bits: int  # 16: bf16 base, 8: LLM.int8 base, 4: NF4 base (QLoRA)
    optimizer: str
    seq: int
    batch: int

    @property
    def name(self) -> str:
        return f"{self.shape}-{self.bits}bit-{self.optimizer}-s{self.seq}-b{self.batch}"


def grid(quick: bool) -> list[list[Setting]]:
    """The settings in stages, most important first (the probe stage uses the first stage's runs as adapters)."""
    one, three = ("tiny", "tiny") if quick else ("llama-3.2-1b", "llama-3.2-3b")
    seq, long_seq, short_seq = (96, 160, 80) if quick else (1024, 2048, 512)
    precision = [Setting(one, 16, "adamw_torch", seq, 4), Setting(one, 8, "adamw_torch", seq, 4),
                 Setting(one, 8, "adamw_bnb_8bit", seq, 4), Setting(one, 4, "adamw_torch", seq, 4)]
    lengths = [Setting(one, 16, "adamw_torch", short_seq, 4), Setting(one, 16, "adamw_torch", long_seq, 1),
               Setting(one, 16, "adamw_torch", long_seq, 4)]
    bigger = [Setting(three, 16, "adamw_torch", seq, 4), Setting(three, 8, "adamw_bnb_8bit", seq, 4),
              Setting(three, 4, "adamw_torch", seq, 4), Setting(three, 8, "adamw_torch", seq, 4)]
    return [precision, lengths, bigger]


def build_base(work: Path, shape: str, tokenizer: Path) -> Path:
    """A random-init Llama of ``shape`` in bf16 (built on the GPU where there is one: seconds, not minutes)."""
    import torch
    from real_shape import copy_tokenizer
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = work / f"base-{shape}"
    if (out / "config.json").exists():
        return out
    tok = AutoTokenizer.from_pretrained(str(tokenizer))
    stops = [tok.convert_tokens_to_ids(t) for t in STOPS]
    config = LlamaConfig(**SHAPES[shape], vocab_size=len(tok), max_position_embeddings=8192, tie_word_embeddings=True,
                         rope_theta=500000.0, bos_token_id=tok.bos_token_id, eos_token_id=stops)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    GenerationConfig(eos_token_id=stops, bos_token_id=tok.bos_token_id).save_pretrained(out)
    copy_tokenizer(tokenizer, out)
    del model
    _release_cuda()
    return out


WORDS = ("the", "river", "keeps", "a", "slow", "count", "of", "stones", "while", "lanterns", "drift", "over", "old",
         "bridges", "and", "small", "boats", "carry", "bread", "salt", "letters", "copper", "wire", "music", "rain",
         "clocks", "paper", "seeds", "maps", "bells", "glass", "honey", "iron", "wool", "smoke")


def write_rows(path: Path, rows: int, words: int, seed: int = 0) -> Path:
    """Chat rows whose assistant turn is long enough to fill the longest sequence after truncation (the prompt is
    short, so every truncated row keeps trained tokens)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            reply = " ".join(rng.choice(WORDS) for _ in range(words))
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Tell story {i}."},
                                             {"role": "assistant", "content": reply}]}) + "\n")
    return path


def write_config(folder: Path, base: Path, data: Path, s: Setting, steps: int) -> Path:
    lines = [f"base_model: {base}", "chat_template: tokenizer_default", "datasets:", f"  - path: {data}",
             "    type: chat_template", f"sequence_len: {s.seq}", f"adapter: {'qlora' if s.bits == 4 else 'lora'}",
             "lora_r: 16", "lora_alpha: 32", "lora_dropout: 0.0", "lora_target_linear: true",
             f"micro_batch_size: {s.batch}", "gradient_accumulation_steps: 1", f"max_steps: {steps}",
             f"optimizer: {s.optimizer}", "learning_rate: 1e-4", "lr_scheduler: constant", "logging_steps: 1",
             "save_steps: 100000", "train_on_inputs: false", "seed: 1", f"output_dir: {folder / s.name}"]
    if s.bits == 8:
        lines.append("load_in_8bit: true")
    if s.bits == 4:
        lines += ["load_in_4bit: true", "bnb_4bit_quant_type: nf4", "bnb_4bit_compute_dtype: bfloat16"]
    path = folder / f"{s.name}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_one(s: Setting, base: Path, data: Path, work: Path, steps: int, timeout: float) -> dict[str, Any]:
    """One ``evalsuite train`` process; the figures from the manifest it writes."""
    cfg = write_config(work, base, data, s, steps)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "evalsuite.cli", "train", str(cfg), "--overwrite"],
                          capture_output=True, text=True, timeout=timeout)
    row: dict[str, Any] = {**asdict(s), "name": s.name, "wall_s": round(time.perf_counter() - t0, 1),
                           "exit": proc.returncode}
    manifest = work / s.name / "evalsuite_manifest.json"
    if proc.returncode != 0 or not manifest.exists():
        row["error"] = proc.stderr[-1500:]
        return row
    train = json.loads(manifest.read_text(encoding="utf-8"))["train"]
    step = train.get("step_time_s")
    row.update(run_dir=str(work / s.name), peak_cuda_mb=train.get("peak_cuda_mb"), step_time_s=step,
               steps=train.get("global_step"), final_loss=train.get("final_loss"),
               tokens_per_s=round(s.seq * s.batch / step) if step else None)
    return row


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.deadline = time.monotonic() + args.deadline_s
        self.figures: dict[str, Any] = {"quick": args.quick, "train": [], "skipped": []}
        args.work.mkdir(parents=True, exist_ok=True)
        args.out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        (self.args.out / "gpu_bench.json").write_text(json.dumps(self.figures, indent=2) + "\n", encoding="utf-8")
        (self.args.out / "gpu_bench.md").write_text(markdown(self.figures), encoding="utf-8")

    def skip(self, what: str, why: str) -> None:
        print(f"skipped {what}: {why}", flush=True)
        self.figures["skipped"].append({"what": what, "why": why})
        self.save()

    def train_stage(self, settings: list[Setting], data: Path) -> None:
        steps = 3 if self.args.quick else 6
        for s in settings:
            if self.left() < self.args.min_stage_s:
                self.skip(s.name, f"{self.left():.0f} s left before the deadline")
                continue
            base = build_base(self.args.work, s.shape, self.args.tokenizer)
            try:
                row = train_one(s, base, data, self.args.work, steps, timeout=max(10.0, self.left()))
            except subprocess.TimeoutExpired:
                row = {**asdict(s), "name": s.name, "error": "timed out at the deadline"}
            print(json.dumps({k: v for k, v in row.items() if k != "error"}), row.get("error", "")[-600:], flush=True)
            self.figures["train"].append(row)
            self.save()

    def probe_stage(self) -> None:
        runs = [Path(r["run_dir"]) for r in self.figures["train"] if r.get("run_dir")][:4]
        if len(runs) < 2:
            self.skip("probe", f"{len(runs)} adapter(s) trained; the session comparison needs at least two")
            return
        from probe_bench import battery_prompts, bench_naive_vs_batched, bench_sessions, write_battery

        prompts, max_new = battery_prompts("uppercase-echo")
        prompts = prompts[:self.args.prompts]
        batch = self.args.batch_size
        r = bench_naive_vs_batched(runs[0], prompts, max_new, batch, self.args.naive_prompts)
        _release_cuda()  # the next processes measure their own peak; give them the whole card
        self.figures["tokens_per_s"] = r
        print(json.dumps(r), flush=True)
        self.save()
        if self.left() < 2 * self.args.min_stage_s:
            self.skip("probe sessions", f"{self.left():.0f} s left before the deadline")
            return
        folder = self.args.work / "battery"
        folder.mkdir(exist_ok=True)
        battery = write_battery(prompts, max_new, folder)
        s = bench_sessions(runs, str(battery), self.args.work, batch)
        self.figures["sessions"] = s
        print(json.dumps(s), flush=True)
        self.save()
        self.report(self.args.work / "one.json")

    def report(self, results: Path) -> None:
        out = self.args.out
        proc = subprocess.run([sys.executable, "-m", "evalsuite.cli", "report", str(results), "-o",
                               str(out / "report.html"), "--markdown", str(out / "report.md")],
                              capture_output=True, text=True, timeout=max(10.0, self.left()))
        self.figures["report"] = {"exit": proc.returncode, "stderr": proc.stderr[-800:]}
        self.save()


def _release_cuda() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def env_facts() -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    facts: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                             "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    for name in ("transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets", "evalsuite", "vllm"):
        try:
            facts[name] = md.version(name)
        except md.PackageNotFoundError:
            facts[name] = None
    return facts


def _mb(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, (int, float)) else "–"


def markdown(f: dict[str, Any]) -> str:
    lines = [f"# GPU bench ({'quick rehearsal' if f.get('quick') else 'device run'})", "",
             f"Environment: `{json.dumps(f.get('env', {}))}`", "",
             "| setting | peak VRAM MB | median step s | tokens/s | steps | wall s (process) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in f["train"]:
        bits = {16: "16-bit (bf16 on GPU, fp32 on CPU)", 8: "8-bit", 4: "4-bit NF4"}[r["bits"]]
        name = f"{r['shape']} {bits}, {r['optimizer']}, seq {r['seq']}, micro-batch {r['batch']}"
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'].strip().splitlines()[-1][:120] if r['error'] else '?'} "
                         "| | | | |")
            continue
        step = r.get("step_time_s")
        lines.append(f"| {name} | {_mb(r.get('peak_cuda_mb'))} | {step if step is not None else '–'} | "
                     f"{_mb(r.get('tokens_per_s'))} | {r.get('steps')} | {r.get('wall_s')} |")
    t = f.get("tokens_per_s")
    if t:
        lines += ["", f"Probe engine: naive loop {t['naive']['tokens_per_s']:.0f} tok/s ({t['naive_prompts']} prompts) "
                  "vs "
                  f"batched engine {t['evalsuite']['tokens_per_s']:.0f} tok/s (batch {t['batch_size']}, "
                  f"{t['prompts']} prompts x {t['max_new_tokens']} tokens): {t['speedup']:.1f}x; identical outputs "
                  f"{t['identical_outputs']}/{t['naive_prompts']}"]
    s = f.get("sessions")
    if s:
        lines += ["", f"Sessions: one session of {s['adapters']} adapters {s['one_session_s']:.1f} s vs "
                  f"{' + '.join(f'{x:.1f}' for x in s['separate_sessions_s'])} = {sum(s['separate_sessions_s']):.1f} s "
                  f"separately: ratio {s['ratio']:.2f}; floor {s['floor_s']:.1f} s (session/floor "
                  f"{s['floor_ratio']:.2f}x); peak CUDA MB {json.dumps(s.get('peak_cuda_mb'))}"]
    for sk in f.get("skipped", []):
        lines.append(f"\nSkipped {sk['what']}: {sk['why']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="a Llama-3 tokenizer dir (gpu_prep.py)")
    parser.add_argument("--out", type=Path, required=True, help="where the figures and the report go")
    parser.add_argument("--work", type=Path, default=Path("/tmp/evalsuite-gpu"))
    parser.add_argument("--deadline-s", type=float, default=430.0, help="stop starting stages after this")
    parser.add_argument("--min-stage-s", type=float, default=25.0, help="start nothing with less than this left")
    parser.add_argument("--quick", action="store_true", help="tiny shape, short sequences: a CPU rehearsal")
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--naive-prompts", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    bench = Bench(args)
    bench.figures["env"] = env_facts()
    bench.save()
    print(json.dumps(bench.figures["env"]), flush=True)
    precision, lengths, bigger = grid(args.quick)
    longest = max(s.seq for s in precision + lengths + bigger)
    data = write_rows(args.work / "long_rows.jsonl", rows=8 * 4, words=int(longest * 1.3))
    bench.train_stage(precision, data)
    bench.probe_stage()
    bench.train_stage(lengths, data)
    bench.train_stage(bigger, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
