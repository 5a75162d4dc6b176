"""The real-shape model of ``probe_bench.py --real-shape``, and the machine's matmul limit for it.

The base is a random-init 55.6M-parameter Llama (hidden 512, 8 layers, 8 heads with 4 KV heads, MLP 1344, untied
32,064-row embedding and head: 39.2M parameters in linear layers) on the real Phi-3-mini tokenizer and chat template
from ``$EVALSUITE_FIXTURES`` (read there, written beside the weights in the work folder, never into the project).
Random weights never emit a stop token, so every side decodes the full token budget of every prompt.

The adapters are real run dirs written by ``evalsuite train`` (the trl backend, a few steps of the demo data with a
high learning rate, so each adapter's LoRA B is non-zero and its outputs differ from the base's).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

TOKENIZER = "tokenizers/phi3-mini-4k-instruct"
SHAPE = {"vocab_size": 32064, "hidden_size": 512, "intermediate_size": 1344, "num_hidden_layers": 8,
         "num_attention_heads": 8, "num_key_value_heads": 4}


def fixtures_tokenizer() -> Path | None:
    root = os.environ.get("EVALSUITE_FIXTURES")
    folder = Path(root) / TOKENIZER if root else None
    return folder if folder is not None and (folder / "tokenizer.json").exists() else None


def build_base(out: Path, tokenizer: Path, seed: int = 0) -> Path:
    """The random-init base with the Phi-3 tokenizer files beside it (built once per work folder)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if (out / "model.safetensors").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = LlamaConfig(**SHAPE, max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=1,
                         eos_token_id=32000, pad_token_id=32000)
    LlamaForCausalLM(config).save_pretrained(out)
    GenerationConfig(eos_token_id=[32000, 32007], pad_token_id=32000).save_pretrained(out)
    return copy_tokenizer(tokenizer, out)


def copy_tokenizer(tokenizer: Path, out: Path) -> Path:
    """The tokenizer files beside a random-init base, so that the folder loads like a hub checkpoint."""
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tokenizer / name).exists():
            shutil.copyfile(tokenizer / name, out / name)
    return out


def train_adapters(base: Path, root: Path, n: int, steps: int = 3) -> list[Path]:
    """``n`` run dirs trained on ``base`` by ``evalsuite train`` (trl backend, demo data, ``steps`` steps)."""
    from evalsuite.config.load import load_config
    from evalsuite.demo import demo_config_path
    from evalsuite.train.backends import TrainOptions, get_backend

    out = []
    for i in range(n):
        run = root / f"real{i}"
        if not (run / "evalsuite_manifest.json").exists():
            config = replace(load_config(demo_config_path()), base_model=str(base), max_steps=steps, seed=200 + i,
                             save_steps=None, micro_batch_size=4, sequence_len=96, learning_rate=5e-2,
                             warmup_ratio=0.0)
            get_backend("trl").train(config, run, TrainOptions(overwrite=True))
        out.append(run)
    return out


def linear_shapes(model: Any) -> list[tuple[int, int]]:
    """(in, out) of every linear layer of a plain (adapter-free) model, one entry per call of a decode step."""
    import torch

    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]


def matmul_limit(shapes: list[tuple[int, int]], batch: int, dtype: Any, seconds: float = 2.0) -> float:
    """GFLOPS of ``[batch, in] x [in, out]`` for every shape in turn, timed alone (the best of repeated passes)."""
    import torch

    weights = [torch.randn(i, o, dtype=dtype) for i, o in shapes]
    xs = {i: torch.randn(batch, i, dtype=dtype) for i, _ in shapes}
    flops = sum(2 * batch * i * o for i, o in shapes)
    best, t_end, passes = float("inf"), time.perf_counter() + seconds, 0
    with torch.inference_mode():
        for w in weights:  # warm-up
            xs[w.shape[0]] @ w
        while passes < 3 or time.perf_counter() < t_end:
            passes += 1
            t0 = time.perf_counter()
            for w in weights:
                xs[w.shape[0]] @ w
            best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def has_avx512_bf16() -> bool:
    try:
        return "avx512_bf16" in Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
