"""Greedy decoding with a KV cache that drops finished rows as it goes.

``transformers``' ``generate`` keeps every row of a batch in the forward pass until the last one stops, so one
runaway prompt makes 31 finished ones pay for its 96 tokens. Probe batteries are exactly that mix (most answers stop
after a few tokens, a broken adapter runs to the budget), so this loop removes a row from the batch, its KV cache
and its attention mask as soon as it emits a stop token. Everything else is what ``generate`` does for greedy
search: left padding with an attention mask, position ids counted over real tokens only, argmax of the last logits.
The prompts are prefilled in chunks of similar length (:func:`prefill`), so short prompts skip most of the padding.
A test checks the outputs are identical to ``model.generate``.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evalsuite.probe.stall import Watch


@dataclass
class Decoded:
    rows: list[list[int]]  # new tokens per row, the stop token included when one was emitted
    capped: bool  # the stall guard (or a cancel) ended decoding before every row stopped or reached max_new
    seconds: float


def greedy_decode(model: Any, input_ids: Any, attention_mask: Any, max_new: int, stop_ids: set[int],
                  adapter_names: list[str] | None = None, watch: Watch | None = None,
                  cancel: threading.Event | None = None) -> Decoded:
    """Greedy tokens for each row; stops early, ``capped``, when ``watch`` says the engine stalled (no new token for
    the stall guard's seconds, the prefill included: :mod:`evalsuite.probe.guard`) or once ``cancel`` is set
    (another batch of the same run failed, :func:`evalsuite.probe.engines.workers.run_batches`)."""
    from evalsuite.probe.stall import watching

    with watching(watch):  # the layers' forward hooks (:func:`watch_layers`) wind it during the prefill
        return _greedy(model, input_ids, attention_mask, max_new, stop_ids, adapter_names, watch, cancel)


def _greedy(model: Any, input_ids: Any, attention_mask: Any, max_new: int, stop_ids: set[int],
            adapter_names: list[str] | None, watch: Watch | None, cancel: threading.Event | None) -> Decoded:
    import torch

    t0 = time.perf_counter()
    n = input_ids.shape[0]
    rows: list[list[int]] = [[] for _ in range(n)]
    alive = list(range(n))  # original row of each row still in the batch
    mask = attention_mask
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    extra: dict[str, Any] = {} if adapter_names is None else {"adapter_names": list(adapter_names)}
    cache, logits = prefill(model, input_ids, mask, positions, extra, max_new)
    cache_arg = cache_kwarg(model)
    last = positions[:, -1:]
    capped = False
    for step in range(max_new):
        tokens = logits.float().argmax(-1)  # bf16 argmax is 4x slower on CPU than converting first (same ids)
        keep = []
        for j, t in enumerate(tokens.tolist()):
            rows[alive[j]].append(t)
            if t not in stop_ids:
                keep.append(j)
        if not keep or step == max_new - 1:
            break
        if (watch is not None and watch.stalled()) or (cancel and cancel.is_set()):
            capped = True
            break
        if len(keep) < len(alive):
            index = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(index)
            mask, last, tokens = mask[index], last[index], tokens[index]
            alive = [alive[j] for j in keep]
            if adapter_names is not None:
                extra["adapter_names"] = [extra["adapter_names"][j] for j in keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        last = last + 1
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=last, use_cache=True,
                    **{cache_arg: cache}, **extra)
        logits = out.logits[:, -1, :]
    return Decoded(rows, capped, time.perf_counter() - t0)


def watch_layers(model: Any) -> int:
    """A forward hook on each decoder layer (the longest ``ModuleList`` of the model) that tells the decoding
    thread's stall watch a layer finished: a long prefill of a big batch is progress, not a stall. Returns the
    number of layers hooked."""
    import torch

    from evalsuite.probe.stall import progress

    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        return 0
    layers = max(lists, key=len)
    for layer in layers:
        layer.register_forward_hook(progress)
    return len(layers)


def prefill(model: Any, input_ids: Any, mask: Any, positions: Any, extra: dict[str, Any],
            room: int) -> tuple[Any, Any]:
    """The KV cache of the left-padded prompts, with ``room`` for as many new tokens (:func:`growing_cache`), and
    the logits of their last position.

    Rows run in chunks of similar length (:func:`chunks`, in the given order: the engine sorts by length), each padded
    only to its own longest prompt; the chunks' caches are then left-padded with zeros to the batch's width and
    joined. The padding is masked in every later step, as it is in one prefill of the whole batch, where the shortest
    prompts would pay for the longest one's width (padding was 40% of a 32-prompt battery's prefill). Models whose
    cache is not plain per-layer key/value tensors (sliding windows) prefill in one pass."""
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    width = input_ids.shape[1]
    cache_arg = cache_kwarg(model)
    lengths = mask.sum(-1).tolist()
    parts = chunks(lengths, CHUNK_COST)
    plain = all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)
    if not plain:
        parts = [(0, len(lengths))]
    caches, logits = [], []
    for a, b in parts:
        w = width if len(parts) == 1 else max(lengths[a:b])
        cache = growing_cache(model, room) if len(parts) == 1 else DynamicCache(config=model.config)
        mine = {k: v[a:b] for k, v in extra.items()}
        # logits_to_keep as an index, not ``1``: the sliced hidden state is then contiguous and the head runs as one
        # matmul, not as a batched matmul over a broadcast copy of its weight (5x slower on CPU).
        out = model(input_ids=input_ids[a:b, width - w:], attention_mask=mask[a:b, width - w:],
                    position_ids=positions[a:b, width - w:], use_cache=True, **{cache_arg: cache},
                    logits_to_keep=torch.tensor([w - 1], device=input_ids.device), **mine)
        caches.append(cache)
        logits.append(out.logits[:, -1, :])
    if len(caches) == 1:
        return caches[0], logits[0]
    joined = growing_cache(model, room)
    for i in range(len(joined.layers)):
        layers: list[Any] = [c.layers[i] for c in caches]  # each chunk's DynamicLayer: keys, values [b, h, w, d]
        keys = [F.pad(p.keys, (0, 0, width - p.keys.shape[-2], 0)) for p in layers]
        values = [F.pad(p.values, (0, 0, width - p.values.shape[-2], 0)) for p in layers]
        joined.update(torch.cat(keys), torch.cat(values), i)
    return joined, torch.cat(logits)


def cache_kwarg(model: Any) -> str:
    """The name the model's forward takes its KV cache by: ``cache`` from transformers 5.2x on, ``past_key_values``
    before (deprecated since, and to be removed: a model that no longer knows the name would swallow the cache in
    its ``**kwargs`` and decode every step without context)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def growing_cache(model: Any, room: int) -> Any:
    """A ``DynamicCache`` whose layers hold their keys and values in buffers with ``room`` for the new tokens (the
    prompt's positions come with its first update, the decode loop adds at most ``room`` more), so a
    decode step writes one position instead of concatenating the whole cache (at 64 rows x 117 positions a concat is
    145 us per layer and tensor, the write 4 us; attention reads the buffer's prefix as a view). Models whose layers
    are not plain ``DynamicLayer`` (sliding windows) keep theirs."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    if all(type(layer) is DynamicLayer for layer in cache.layers):
        layer = _buffered_layer()
        cache.layers = [layer(room) for _ in cache.layers]
    return cache


@functools.cache
def _buffered_layer() -> Any:
    """The ``DynamicLayer`` subclass of :func:`growing_cache` (defined on first use: importing this module imports
    no torch)."""
    from transformers.cache_utils import DynamicLayer

    class BufferedLayer(DynamicLayer):
        def __init__(self, room: int) -> None:
            super().__init__()
            self.room, self.length = room, 0

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            n = key_states.shape[-2]
            if not self.is_initialized:
                self.device, self.is_initialized = key_states.device, True
                b, h, _, d = key_states.shape
                self.k_buf = key_states.new_empty((b, h, n + self.room, d))
                self.v_buf = value_states.new_empty((b, h, n + self.room, d))
            self.k_buf[:, :, self.length:self.length + n] = key_states
            self.v_buf[:, :, self.length:self.length + n] = value_states
            self.length += n
            self.keys, self.values = self.k_buf[:, :, :self.length], self.v_buf[:, :, :self.length]
            return self.keys, self.values

        def batch_select_indices(self, indices: Any) -> None:
            self.k_buf, self.v_buf = self.k_buf[indices], self.v_buf[indices]
            self.keys, self.values = self.k_buf[:, :, :self.length], self.v_buf[:, :, :self.length]

    return BufferedLayer


CHUNK_COST = 32  # a forward pass's fixed cost, in prompt tokens (Python, small ops, smaller matmuls per token)


def chunks(lengths: list[int], overhead: int = CHUNK_COST) -> list[tuple[int, int]]:
    """Consecutive row ranges ``[a, b)`` that minimise the tokens prefilled (rows x the range's longest prompt) plus
    ``overhead`` per range: one range when the lengths are close, more when they spread."""
    n = len(lengths)
    best = [0.0] + [float("inf")] * n  # best[j]: the cost of rows [0, j)
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = 0
        for i in range(j - 1, -1, -1):
            longest = max(longest, lengths[i])
            cost = best[i] + (j - i) * longest + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    out, j = [], n
    while j > 0:
        out.append((cut[j], j))
        j = cut[j]
    return out[::-1]
