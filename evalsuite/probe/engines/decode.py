"""Greedy decoding with a KV cache that drops finished rows as it goes.

``transformers``' ``generate`` keeps every row of a batch in the forward pass until the last one stops, so one
runaway prompt makes 31 finished ones pay for its 96 tokens. Probe batteries are exactly that mix (most answers stop
after a few tokens, a broken adapter runs to the budget), so this loop removes a row from the batch, its KV cache
and its attention mask as soon as it emits a stop token. Everything else is what ``generate`` does for greedy
search: left padding with an attention mask, position ids counted over real tokens only, argmax of the last logits.
A test checks the outputs are identical to ``model.generate``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Decoded:
    rows: list[list[int]]  # new tokens per row, the stop token included when one was emitted
    capped: bool  # the wall-time cap ended decoding before every row stopped or reached max_new
    seconds: float


def greedy_decode(model: Any, input_ids: Any, attention_mask: Any, max_new: int, stop_ids: set[int],
                  adapter_names: list[str] | None = None, max_seconds: float | None = None) -> Decoded:
    import torch
    from transformers import DynamicCache

    t0 = time.perf_counter()
    n = input_ids.shape[0]
    rows: list[list[int]] = [[] for _ in range(n)]
    alive = list(range(n))  # original row of each row still in the batch
    mask = attention_mask
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    extra: dict[str, Any] = {} if adapter_names is None else {"adapter_names": list(adapter_names)}
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                use_cache=True, logits_to_keep=1, **extra)
    last = positions[:, -1:]
    capped = False
    for step in range(max_new):
        tokens = out.logits[:, -1, :].argmax(-1)
        keep = []
        for j, t in enumerate(tokens.tolist()):
            rows[alive[j]].append(t)
            if t not in stop_ids:
                keep.append(j)
        if not keep or step == max_new - 1:
            break
        if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
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
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=last, past_key_values=cache,
                    use_cache=True, **extra)
    return Decoded(rows, capped, time.perf_counter() - t0)
