"""Reasoning outputs in the probe: the scorer sees the final answer (the text after the reasoning block), the sample
records how long the reasoning was, and an output that never closes its block is flagged ``in_reasoning``.

Reasoning models write ``<think> ... </think>`` (DeepSeek-R1, QwQ, Qwen3, Granite, Kimi), ``<seed:think>`` (Seed-OSS),
``<|START_THINKING|>`` (Command-R7B), ``[THINK]`` (Magistral), gpt-oss's analysis channel; often the generation
prompt already opens the block (``<|im_start|>assistant\\n<think>\\n``), so the output starts inside it. When a
marker is a special token, the output decoded without special tokens has lost it, so the split is made on the raw
decode and the answer's special tokens are removed again.

The split itself is :func:`evalsuite.chat.reasoning.split_reasoning`, the encoder's view of the same blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from evalsuite.chat.reasoning import OPENS, ReasoningSplit, split_reasoning
from evalsuite.probe.scorers import Output

_SPACE = " \n\t\r"


def prompt_opens_reasoning(prompt_text: str) -> bool:
    """The rendered prompt ends by opening a reasoning block (Qwen3, DeepSeek-R1's generation prompts)."""
    return prompt_text.rstrip(_SPACE).endswith(OPENS)


def final_answer(out: Output, opened: bool, specials: Sequence[str] = ()) -> tuple[Output, ReasoningSplit | None]:
    """``out`` cut to its final answer (text and raw), and the split; ``out`` itself when there is no block."""
    text, raw = split_reasoning(out.text, opened), split_reasoning(out.raw or out.text, opened)
    if text.reasoning is None and raw.reasoning is None:
        return out, None
    if text.reasoning is not None:
        split, answer = text, text.answer
    else:  # the markers are special tokens: only the raw decode kept them
        split, answer = raw, _without(raw.answer, specials)
    return replace(out, text=answer, raw=raw.answer if raw.reasoning is not None else answer), split


def _without(text: str, specials: Sequence[str]) -> str:
    for s in sorted((s for s in specials if s), key=len, reverse=True):
        text = text.replace(s, "")
    return text


def reasoning_details(split: ReasoningSplit, answer: str, tokens: int) -> dict[str, Any]:
    """What a sample records: the reasoning's length (characters, tokens), whether it closed, and the answer that
    was scored; ``in_reasoning`` when the output never closed the block."""
    details: dict[str, Any] = {"reasoning": {"chars": len(split.reasoning or ""), "tokens": tokens,
                                             "closed": split.closed}, "answer": answer}
    if not split.closed:
        details["in_reasoning"] = True
    return details
