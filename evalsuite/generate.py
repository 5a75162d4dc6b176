"""Generation engines. ``HFEngine``: load the base once, attach N LoRA adapters (peft multi-adapter), batched greedy
decoding with left padding and KV cache, stopping on the run dir's stop ids. Prompts are rendered with evalsuite's
own sandboxed renderer and the template the adapter was trained with, so inference sees what training saw.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from evalsuite.chat_template import render
from evalsuite.tokenizer_files import TokenizerInfo

FINISH_REASONS = ("eos", "stop-string", "max-tokens", "new-turn")


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 64
    batch_size: int = 32
    seed: int = 0
    max_batch_seconds: float | None = 120.0
    stop_strings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str
    tokens: int
    latency_s: float
    raw: str  # decoded with special tokens kept, for leakage checks


class Generator(Protocol):
    def generate(self, conversations: Sequence[Sequence[dict[str, str]]], adapter: str | None,
                 settings: GenerationSettings) -> list[Generation]:
        ...


@dataclass
class PromptCodec:
    """Renders conversations to ids and decodes outputs, with one tokenizer and one template."""

    tk: TokenizerInfo
    template: str
    stop_ids: list[int]
    turn_start_ids: set[int]

    def prompt_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        text = render(self.template, messages, add_generation_prompt=True,
                      special_tokens=self.tk.template_variables()).text
        return self.tk.encode(text, add_special_tokens=False)

    def finish(self, ids: list[int], max_new: int, stop_strings: tuple[str, ...]) -> tuple[list[int], str]:
        """Cut the generated ids at the first stop and say why generation ended."""
        for i, t in enumerate(ids):
            if t in self.stop_ids:
                return ids[:i], "eos"
            if t in self.turn_start_ids:
                return ids[:i], "new-turn"
        if stop_strings:
            text = self.tk.decode(ids)
            for s in stop_strings:
                if s in text:
                    return self.tk.encode(text.split(s, 1)[0]), "stop-string"
        # No stop within the budget (new tokens or wall time): a runaway, recorded as such.
        return ids, "max-tokens"


def turn_start_ids(tk: TokenizerInfo, template: str, stop_ids: list[int]) -> set[int]:
    """Special tokens in the template other than the stops (e.g. ``<|im_start|>``): emitting one means the model has
    begun a new turn instead of stopping."""
    return {i for content, (i, special) in tk.added_tokens.items()
            if special and content in template and i not in stop_ids}


class HFEngine:
    """transformers + peft engine. ``adapters`` maps a display name to a run dir; ``None`` selects the plain base."""

    def __init__(self, base_model: str, codec: PromptCodec, adapters: dict[str, Path] | None = None,
                 device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32 if self.device == "cpu"
                                                     else torch.bfloat16)
        self.adapters = dict(adapters or {})
        if self.adapters:
            from peft import PeftModel

            names = list(self.adapters)
            model = PeftModel.from_pretrained(model, str(self.adapters[names[0]]), adapter_name=names[0])
            for name in names[1:]:
                model.load_adapter(str(self.adapters[name]), adapter_name=name)
        self.model = model.to(self.device).eval()
        self.codec = codec

    def generate(self, conversations: Sequence[Sequence[dict[str, str]]], adapter: str | None,
                 settings: GenerationSettings) -> list[Generation]:
        out: list[Generation] = []
        for start in range(0, len(conversations), settings.batch_size):
            out += self._batch(conversations[start:start + settings.batch_size], adapter, settings)
        return out

    def _batch(self, batch: Sequence[Sequence[dict[str, str]]], adapter: str | None,
               settings: GenerationSettings) -> list[Generation]:
        torch = self.torch
        prompts = [self.codec.prompt_ids(m) for m in batch]
        width = max(len(p) for p in prompts)
        pad = self.codec.tk.token_id(self.codec.tk.pad_token) or 0
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        torch.manual_seed(settings.seed)
        t0 = time.perf_counter()
        with torch.inference_mode(), self._adapter(adapter):
            gen = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=settings.max_new_tokens,
                                      do_sample=False, eos_token_id=self.codec.stop_ids, pad_token_id=pad,
                                      max_time=settings.max_batch_seconds, use_cache=True)
        latency = (time.perf_counter() - t0) / len(batch)
        results = []
        for row in gen[:, width:].tolist():
            kept, reason = self.codec.finish(row, settings.max_new_tokens, settings.stop_strings)
            text = self.codec.tk.decode(kept, skip_special_tokens=True)
            raw = self.codec.tk.decode(row[: len(kept) + (reason in ("eos", "new-turn"))])
            results.append(Generation(text, reason, len(kept), latency, raw))
        return results

    def _adapter(self, adapter: str | None) -> Any:
        import contextlib

        if not self.adapters:
            return contextlib.nullcontext()
        if adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()
