"""A padded batch of the demo batteries' prompts on an hf engine, and the check that a decode gave
``model.generate``'s tokens: shared by the tests that hold the engine's decode loop and attention to transformers'."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Batch:
    engine: Any
    ids: Any
    mask: Any
    stops: set[int]
    pad: int

    def generate_kwargs(self) -> dict[str, Any]:
        return {"input_ids": self.ids, "attention_mask": self.mask, "max_new_tokens": 64, "do_sample": False,
                "eos_token_id": sorted(self.stops), "pad_token_id": self.pad}


def demo_batch(demo_adapter: Path, device: str | None = None, rows: int = 24) -> Batch:
    """The first ``rows`` prompts of two demo batteries, left-padded, on an engine with the demo adapter as "a"
    (on ``device``, by default the engine's own choice)."""
    import torch

    from evalsuite.probe.engines import EngineSpec
    from evalsuite.probe.engines.hf import HFEngine
    from evalsuite.probe.runner import ProbeOptions, plan_probes

    plan = plan_probes([demo_adapter], ProbeOptions(batteries=["runaway-turns", "uppercase-echo"]))
    target = plan.targets[0]
    engine = HFEngine(EngineSpec(target.base_model, {"a": target.codec}, {"a": demo_adapter}, device=device))
    codec = target.codec
    prompts = [codec.prompt_ids(c.messages) for b in plan.batteries for c in b.cases][:rows]
    assert len(set(map(len, prompts))) > 1  # left padding is exercised
    pad = codec.tk.token_id(codec.tk.pad_token) or 0
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return Batch(engine, ids, mask, set(codec.generation_stop_ids), pad)


def assert_same_tokens(batch: Batch, reference: Any, rows: list[list[int]]) -> None:
    """Each decoded row equals ``generate``'s up to and including its first stop token."""
    width = batch.ids.shape[1]
    for row, mine in zip(reference[:, width:].tolist(), rows, strict=True):
        cut = next((i + 1 for i, t in enumerate(row) if t in batch.stops), len(row))
        assert mine == row[:cut]
    assert any(len(r) < 64 for r in rows) and any(len(r) > 8 for r in rows)
