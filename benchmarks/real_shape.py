"""The real-shape model of ``probe_bench.py --real-shape``, and the machine's matmul limit for it.

The base is a random-init 55.6M-parameter Llama (hidden 512, 8 layers, 8 heads with 4 KV heads, MLP 1344, untied
32,064-row embedding and head: 39.2M parameters in linear layers) on the real Phi-3-mini tokenizer and chat template
from ``$EVALSUITE_FIXTURES`` (read there, written beside the weights in the work folder, never into the project).
Random weights never emit a stop token, so every side decodes the full token budget of every prompt.

The adapters are real run dirs written by ``evalsuite train`` (the trl backend, a few steps of the demo data with a
high learning rate, so each adapter's LoRA B is non-zero and its outputs differ from the base's).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from evalsuite.probe.engines.workers import op_threads

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


def alone_seconds(shapes: list[tuple[int, int]], rows: int, dtype: Any, seconds: float = 2.0,
                  streams: int = 1) -> float:
    """The best time of one pass of ``[rows, in] x [in, out]`` over every shape in turn, timed alone (repeated
    passes for ``seconds``, at least three). With ``streams`` above one, that many threads run a pass each at once
    on the same weights, each matmul on its share of the threads, as the engine's CPU workers do: the time is a
    round's wall time over ``streams``."""
    import torch

    weights = [torch.randn(i, o, dtype=dtype) for i, o in shapes]
    xs = [{i: torch.randn(rows, i, dtype=dtype) for i, _ in shapes} for _ in range(streams)]

    def one_pass(k: int) -> None:
        with torch.inference_mode():
            for w in weights:
                xs[k][w.shape[0]] @ w

    best, t_end, rounds = float("inf"), time.perf_counter() + seconds, 0
    with op_threads(max(1, torch.get_num_threads() // streams)), ThreadPoolExecutor(streams) as pool:
        list(pool.map(one_pass, range(streams)))  # warm-up
        while rounds < 3 or time.perf_counter() < t_end:
            rounds += 1
            t0 = time.perf_counter()
            list(pool.map(one_pass, range(streams)))
            best = min(best, (time.perf_counter() - t0) / streams)
    return best


def matmul_limit(shapes: list[tuple[int, int]], batch: int, dtype: Any, seconds: float = 2.0) -> float:
    """GFLOPS of ``[batch, in] x [in, out]`` for every shape in turn, timed alone (the best of repeated passes)."""
    return sum(2 * batch * i * o for i, o in shapes) / alone_seconds(shapes, batch, dtype, seconds) / 1e9


@dataclass
class Forward:
    """One forward pass of a model as the engine called it: its rows, its new positions per row, how many rows
    of logits it asked for, and its wall time."""
    rows: int
    positions: int
    head_rows: int
    seconds: float


@contextlib.contextmanager
def recorded_forwards(model: Any) -> Iterator[list[Forward]]:
    """Every forward pass of ``model`` while the block runs, with its shape and wall time (from a pre- and a
    post-hook: the engine's Python between passes is not in ``seconds``). Passes of batches decoded at once by the
    CPU workers overlap: each thread's passes are paired by its own stack."""
    calls: list[Forward] = []
    started: dict[int, list[tuple[int, int, int, float]]] = {}

    def before(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids: Any = kwargs.get("input_ids", args[0] if args else None)
        rows, positions = ids.shape
        keep = kwargs.get("logits_to_keep")
        head = positions if keep is None or (isinstance(keep, int) and keep == 0) else \
            keep if isinstance(keep, int) else len(keep)
        started.setdefault(threading.get_ident(), []).append((rows, positions, rows * head, time.perf_counter()))

    def after(_module: Any, _args: Any, _kwargs: Any, _out: Any) -> None:
        rows, positions, head_rows, t0 = started[threading.get_ident()].pop()
        calls.append(Forward(rows, positions, head_rows, time.perf_counter() - t0))

    hooks = [model.register_forward_pre_hook(before, with_kwargs=True),
             model.register_forward_hook(after, with_kwargs=True)]
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


def complete_limit(calls: list[Forward], layers: list[tuple[int, int]], head: tuple[int, int], dtype: Any,
                   seconds: float = 0.5, streams: int = 1) -> dict[str, Any]:
    """Every matmul of the recorded passes (prefill included: ``rows x positions`` rows through the layers, the
    rows of logits through the head), timed alone at the same row counts (in ``streams`` at once, see
    :func:`alone_seconds`), per phase: the seconds they take alone next to the passes' own seconds, and the work in
    GFLOP."""
    alone: dict[tuple[int, bool], float] = {}

    def timed(rows: int, is_head: bool) -> float:
        if (rows, is_head) not in alone:
            alone[rows, is_head] = alone_seconds([head] if is_head else layers, rows, dtype, seconds, streams)
        return alone[rows, is_head]

    layer_params, head_params = sum(i * o for i, o in layers), head[0] * head[1]
    out: dict[str, Any] = {}
    for phase, mine in (("prefill", [c for c in calls if c.positions > 1]),
                        ("decode", [c for c in calls if c.positions == 1])):
        out[phase] = {
            "passes": len(mine), "seconds": sum(c.seconds for c in mine),
            "alone_s": sum(timed(c.rows * c.positions, False) + timed(c.head_rows, True) for c in mine),
            "gflop": sum(2 * (c.rows * c.positions * layer_params + c.head_rows * head_params) for c in mine) / 1e9}
    return out


def has_avx512_bf16() -> bool:
    try:
        return "avx512_bf16" in Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
