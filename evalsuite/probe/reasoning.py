"""Reasoning outputs in the probe: the scorer sees the final answer (the text after the reasoning block), the sample
records how long the reasoning was, and an output that never closes its block is flagged ``in_reasoning``.

Reasoning models write ``<think> ... </think>`` (DeepSeek-R1, QwQ, Qwen3, Granite, Kimi), ``<seed:think>`` (Seed-OSS),
``<|START_THINKING|>`` (Command-R7B), ``[THINK]`` (Magistral), gpt-oss's analysis channel; often the generation
prompt already opens the block (``<|im_start|>assistant\\n<think>\\n``), so the output starts inside it. When a
marker is a special token, the output decoded without special tokens has lost it, so the split is made on the raw
decode and the answer's special tokens are removed again.

:func:`split_reasoning` mirrors ``evalsuite.chat.reasoning.split_reasoning`` on the issue-11 data branch (the
encoder's view of the same blocks); once that module is on main this one imports it instead of keeping its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from evalsuite.probe.scorers import Output

# (open, close) pairs, most specific first (published marker strings of the templates above).
MARKERS: tuple[tuple[str, str], ...] = (
    ("<seed:think>", "</seed:think>"),
    ("<|START_THINKING|>", "<|END_THINKING|>"),
    ("<|channel|>analysis<|message|>", "<|end|>"),
    ("[THINK]", "[/THINK]"),
    ("<think>", "</think>"),
)
_ONLY_REASONING_CLOSES = tuple(c for _o, c in MARKERS if c != "<|end|>")  # gpt-oss's <|end|> ends every message
_SPACE = " \n\t\r"


@dataclass(frozen=True)
class ReasoningSplit:
    """``reasoning`` is None when the text has no block; ``closed`` is False when the output ended inside it (then
    ``answer`` is empty)."""

    reasoning: str | None
    answer: str
    closed: bool = True


def split_reasoning(text: str, opened: bool = False) -> ReasoningSplit:
    """Cut an output into reasoning and answer. ``opened``: the prompt opened the block, so the output starts inside
    it; a closing marker without an opening one is read the same way. Whitespace after the block is not answer."""
    head = text.lstrip(_SPACE)
    pair = next((p for p in MARKERS if head.startswith(p[0])), None)
    if pair is not None:
        body = len(text) - len(head) + len(pair[0])
    else:
        pair = next((p for p in MARKERS if p[1] in _ONLY_REASONING_CLOSES and p[1] in text), None)
        if pair is None:
            return ReasoningSplit(text, "", closed=False) if opened else ReasoningSplit(None, text)
        body = 0
    close = text.find(pair[1], body)
    if close < 0:
        return ReasoningSplit(text[body:], "", closed=False)
    return ReasoningSplit(text[body:close], text[close + len(pair[1]):].lstrip(_SPACE))


def prompt_opens_reasoning(prompt_text: str) -> bool:
    """The rendered prompt ends by opening a reasoning block (Qwen3, DeepSeek-R1's generation prompts)."""
    tail = prompt_text.rstrip(_SPACE)
    return any(tail.endswith(o) for o, _c in MARKERS)


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
