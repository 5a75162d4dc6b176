"""One adapter folded into copies of the base weights for the length of a batch, the base left untouched.

On CPU a LoRA layer costs two small matmuls and two elementwise passes on top of the base matmul (rank 16 on every
linear of a 55.6M Llama: about 6% of a decode step). When a batch runs one adapter, each of its LoRA layers can
instead run one matmul against ``W + scaling * B @ A``, computed once per batch into a new tensor; the base weights
are swapped back afterwards as they were (peft's own merge adds to ``W`` in place and subtracts on unmerge, which
does not give back the same floats). The copies cost the targeted weights' size while the batch runs, so they are
made only up to :data:`MERGE_BUDGET`: past it the LoRA share of a step is small anyway (it shrinks with width).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

MERGE_BUDGET = 2**30  # bytes of merged weight copies held during a batch


def mergeable_layers(model: Any, adapter: str) -> list[Any] | None:
    """The adapter's LoRA layers when every one is a plain linear LoRA over an unquantized ``nn.Linear`` (no DoRA or
    other variant, no LoRA bias), the adapter trains nothing else (``modules_to_save``, trainable tokens) and the
    copies fit :data:`MERGE_BUDGET`; else None."""
    import torch
    from peft import LoraConfig
    from peft.tuners.lora.layer import Linear

    config = model.peft_config.get(adapter)
    if not isinstance(config, LoraConfig) or config.modules_to_save or getattr(config, "trainable_token_indices", None):
        return None
    layers = []
    for module in model.modules():
        if adapter not in getattr(module, "lora_A", {}):
            continue
        plain = type(module) is Linear and adapter not in module.lora_variant \
            and not getattr(module, "lora_bias", {}).get(adapter, False)
        if not plain or type(module.get_base_layer()) is not torch.nn.Linear:
            return None
        layers.append(module)
    size = sum(m.get_base_layer().weight.nbytes for m in layers)
    return layers if layers and size <= MERGE_BUDGET else None


@contextlib.contextmanager
def merged_weights(model: Any, layers: list[Any], adapter: str) -> Iterator[None]:
    """Run ``model`` with ``adapter`` folded into copies of its layers' base weights (in the same memory layout) and
    every LoRA path off; the base weights are put back on exit, whatever happens."""
    import torch

    swapped = []
    try:
        with torch.no_grad():
            for layer in layers:
                base = layer.get_base_layer()
                merged = torch.empty_like(base.weight)
                torch.add(base.weight, layer.get_delta_weight(adapter).to(base.weight.dtype), out=merged)
                swapped.append((base, base.weight))
                base.weight = torch.nn.Parameter(merged, requires_grad=False)
        with model.disable_adapter():
            yield
    finally:
        for base, weight in swapped:
            base.weight = weight
