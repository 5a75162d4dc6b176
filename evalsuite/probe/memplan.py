"""Batch sizes planned from memory (``--batch-size auto``, the default): per battery, from a budget and the
battery's real prompt and answer lengths, so a long-prompt battery (SQuAD) gets smaller batches than a short one.

A batch of ``n`` rows, its longest prompt ``w`` tokens and ``m`` new tokens, holds (:func:`row_bytes`, per row):

- the KV cache: ``2 x layers x kv_heads x head_dim x (w + m)`` values, reserved up front by the decode loop, plus
  the prefill's per-chunk caches of the prompt part before they are joined into it;
- the prefill activations of one layer at a time: hidden states, q/k/v, the MLP's intermediate tensors, and the
  attention scores (``heads x w x w``) where the attention kernel materialises them;
- the logits of the last position (float32, and the float32 copy the argmax reads).

The budget (``--max-memory``: a size, ``2G``, or a share of what is free, ``40%``) covers the weights and the
batches decoded at once: on CPU two batches run together (:mod:`evalsuite.probe.engines.workers`), each gets half
of what the weights leave. Without ``--max-memory``: half of the free RAM, and on CPU at most the weights' size
again per batch decoded at once (a decode step reads the weights once for all rows and each row's cache once; past
a cache as large as the weights, more rows hardly add speed while the memory keeps growing); on CUDA 90% of the
free GPU memory. The plan is an estimate: an out-of-memory error still splits the batch (:mod:`evalsuite.probe.guard`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from evalsuite.errors import EvalsuiteError

AUTO_MAX_ROWS = 64  # auto never plans more rows than the fixed default had (speed stops growing well before)
FREE_SHARE_CPU = 0.5
FREE_SHARE_CUDA = 0.9
UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
         "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}
SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*|%)\s*")


@dataclass(frozen=True)
class Budget:
    """What a plan may fill: a size in bytes, or a share of the memory free when the plan is made."""

    size: int | None = None
    share: float | None = None

    def bytes(self, free: int) -> int:
        return self.size if self.size is not None else int((self.share or 0.0) * free)


def parse_memory(text: str, flag: str = "--max-memory") -> Budget:
    """``2G``, ``800M``, ``1.5GiB``, ``123456`` (bytes) or ``40%`` of the free memory; anything else is an error
    naming ``flag``."""
    m = SIZE.fullmatch(text)
    unit = m.group(2).lower() if m else ""
    if m is None or (unit not in UNITS and unit != "%"):
        raise EvalsuiteError(f"{flag}: expected a size such as 2G, 800M or 40% (of the free memory), got {text!r}")
    value = float(m.group(1))
    if unit == "%":
        if not 0 < value <= 100:
            raise EvalsuiteError(f"{flag}: expected a share between 0% and 100%, got {text!r}")
        return Budget(share=value / 100)
    if value <= 0:
        raise EvalsuiteError(f"{flag}: expected a positive size, got {text!r}")
    return Budget(size=int(value * UNITS[unit]))


@dataclass(frozen=True)
class Shape:
    """What a model's memory per row depends on (from its config)."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    dtype_bytes: int

    @classmethod
    def of(cls, config: Any, dtype_bytes: int) -> Shape:
        """From a transformers config; fields missing from an unusual config fall back to the common layout."""
        text = getattr(config, "text_config", None) or config

        def get(*names: str, default: int = 0) -> int:
            return next((int(v) for n in names if (v := getattr(text, n, None))), default)

        hidden = get("hidden_size", "n_embd", "d_model", default=1024)
        heads = get("num_attention_heads", "n_head", default=max(1, hidden // 64))
        return cls(layers=get("num_hidden_layers", "n_layer", default=24), hidden=hidden,
                   intermediate=get("intermediate_size", "n_inner", "ffn_dim", default=4 * hidden), heads=heads,
                   kv_heads=get("num_key_value_heads", default=heads),
                   head_dim=get("head_dim", default=max(1, hidden // heads)), vocab=get("vocab_size", default=32000),
                   dtype_bytes=dtype_bytes)


def row_bytes(shape: Shape, width: int, max_new: int) -> int:
    """Peak bytes one row of a batch adds: KV cache (reserved for ``width + max_new`` positions) and the prefill's
    chunk caches, one layer's prefill activations, the attention scores, the logits."""
    b = shape.dtype_bytes
    kv_per_position = 2 * shape.layers * shape.kv_heads * shape.head_dim * b
    cache = kv_per_position * (width + max_new) + kv_per_position * width  # the buffer + the chunks before joining
    q_width = shape.heads * shape.head_dim
    activations = width * b * (4 * shape.hidden + 2 * q_width + 3 * shape.intermediate)
    scores = shape.heads * width * width * 4  # float32 scores of one layer, where the kernel materialises them
    logits = 3 * shape.vocab * 4  # the last position's logits, the float32 copy, the argmax input
    return cache + activations + scores + logits


def free_memory(device: str) -> int:
    """Bytes free now: the GPU's (``torch.cuda.mem_get_info``) on CUDA, else the RAM available to new allocations."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    import psutil

    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class Plan:
    """The memory available to batches, per batch decoded at once."""

    per_batch: int
    workers: int

    def rows(self, shape: Shape, width: int, max_new: int, cap: int = AUTO_MAX_ROWS) -> int:
        """Rows that fit one batch whose longest prompt is ``width`` tokens; at least 1, at most ``cap``."""
        return max(1, min(cap, self.per_batch // max(1, row_bytes(shape, width, max_new))))

    def cut(self, shape: Shape, lengths: list[int], max_new: int, cap: int = AUTO_MAX_ROWS) -> list[int]:
        """Batch sizes for rows of these prompt ``lengths`` (ascending, as the engine sorts them): each batch as
        many rows as fit at its own longest prompt (rows are left-padded to it), then the sizes evened out over
        the same number of batches so the workers finish together."""
        sizes: list[int] = []
        start = 0
        while start < len(lengths):
            n = 1
            while start + n < len(lengths) and n < self.rows(shape, lengths[start + n], max_new, cap):
                n += 1
            sizes.append(n)
            start += n
        return _even(sizes, lengths, shape, max_new, self, cap)


def _even(sizes: list[int], lengths: list[int], shape: Shape, max_new: int, memory: Plan, cap: int) -> list[int]:
    """``sizes`` moved towards equal while every batch still fits (long prompts keep their smaller batches):
    greedy cutting leaves a short last batch, which would run alone."""
    k = len(sizes)
    even = [len(lengths) // k + (i < len(lengths) % k) for i in range(k)]
    start = 0
    for n in even:
        if n > memory.rows(shape, lengths[start + n - 1], max_new, cap):
            return sizes
        start += n
    return even


def plan(device: str, weights: int, workers: int, budget: Budget | None) -> Plan:
    """The budget of each of ``workers`` batches decoded at once, beside ``weights`` bytes of loaded weights."""
    free = free_memory(device)
    cuda = device.startswith("cuda")
    if budget is None:
        room = int((FREE_SHARE_CUDA if cuda else FREE_SHARE_CPU) * free)
        if not cuda:
            room = min(room, weights * workers)
    else:
        # A size counts the weights; a share is of what is free now, the weights already loaded.
        total = budget.bytes(free)
        room = total - weights if budget.size is not None else total
        if room <= 0:
            raise EvalsuiteError(f"--max-memory: {_gib(total)} leaves nothing for batches beside the model's "
                                 f"{_gib(weights)} of weights; give more (or a share: 40%)")
    return Plan(max(1, room // max(1, workers)), workers)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"
