"""Attention for one new token per row on CPU, as two matmuls over the key/value heads.

A decode step asks attention for one query position per row against the row's whole KV cache. On CPU torch's SDPA
runs that through its flash kernel, built for long queries: at 64 rows and 100 cached positions of the 55.6M real
shape it took 490 us a layer against 380 us for ``softmax(q k^T * scale) v`` written as two batched matmuls, the
query heads grouped by the key/value head they share (GQA without copying the cache). Over a 96-token decode that is
5-6% of the step. Everything else (prefill, GPU, bf16, dropout, float or per-head masks, soft-capping, attention sinks,
position biases) goes to transformers' own SDPA function unchanged, and the mask is the one SDPA gets (the same mask
function is registered). A test checks the engine's outputs still equal ``model.generate``'s token for token.
"""

from __future__ import annotations

import functools
from typing import Any

NAME = "evalsuite_cpu_decode"
# Keyword arguments SDPA ignores too (a sliding window is already in the mask); any other one goes to SDPA.
_PLAIN_KWARGS = frozenset({"sliding_window", "position_ids", "cache_position", "use_cache", "is_causal"})


def use_decode_attention(model: Any) -> bool:
    """Switch a CPU model that runs transformers' SDPA attention to this module's (registered on first use); other
    models keep theirs. True when switched."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa" or getattr(config, "sub_configs", None):
        return False
    _register()
    model.set_attn_implementation(NAME)
    return True


@functools.cache
def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, decode_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def decode_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                     scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' attention-function signature: ``query`` [b, heads, q, d], ``key``/``value`` [b, kv_heads,
    length, d], a boolean mask [b, 1, q, length] (True: attend) or None; returns [b, q, heads, d] and no weights."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    b, heads, q_len, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    mask_ok = attention_mask is None or (attention_mask.dtype == torch.bool and attention_mask.dim() == 4
                                         and attention_mask.shape[1] == 1 and attention_mask.shape[-1] == length)
    extra = {k for k, v in kwargs.items() if v is not None and k not in _PLAIN_KWARGS}
    # float32 only: bf16 stays on SDPA, whose kernel accumulates the scores in float
    if q_len != 1 or query.device.type != "cpu" or query.dtype != torch.float32 or dropout or extra or not mask_ok \
            or heads % kv_heads:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scores = torch.matmul(query.view(b, kv_heads, heads // kv_heads, dim), key.transpose(-1, -2))
    scores.mul_(scaling if scaling is not None else dim ** -0.5)
    if attention_mask is not None:
        scores.masked_fill_(~attention_mask, float("-inf"))  # [b, 1, 1, length] over [b, kv_heads, group, length]
    out = torch.matmul(torch.softmax(scores, dim=-1), value)  # [b, kv_heads, group, d_v]
    return out.reshape(b, 1, heads, value.shape[-1]), None
