"""Reasoning blocks: where a model's reasoning starts and ends in a rendered turn or in a generated output.

Reasoning models write their reasoning first, between markers their template and tokenizer define (``<think>`` ...
``</think>`` for DeepSeek-R1, QwQ, Qwen3, Granite and Kimi; ``<seed:think>`` for Seed-OSS; ``<|START_THINKING|>`` for
Command-R7B; ``[THINK]`` for Magistral; gpt-oss's analysis channel), then the answer. Often the generation prompt
already opens the block (``<|im_start|>assistant\\n<think>\\n``), so what the model writes starts inside it.

The encoder uses :func:`reasoning_end` to give an assistant turn's reasoning its own label segment (role
``reasoning``, trained unless ``train_on_reasoning: false``); the probe can use :func:`split_reasoning` to score the
answer after the block and to tell outputs that never close it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (open, close) pairs, most specific first.
MARKERS: tuple[tuple[str, str], ...] = (
    ("<seed:think>", "</seed:think>"),
    ("<|START_THINKING|>", "<|END_THINKING|>"),
    ("<|channel|>analysis<|message|>", "<|end|>"),
    ("[THINK]", "[/THINK]"),
    ("<think>", "</think>"),
)
OPENS = tuple(o for o, _c in MARKERS)
CLOSES = tuple(c for _o, c in MARKERS)
# Closing strings that can only end a reasoning block (gpt-oss's <|end|> also ends every other message).
_REASONING_ONLY_CLOSES = tuple(c for c in CLOSES if c != "<|end|>")
# A text holding none of these has no reasoning block (Phi-3's <|end|> alone does not count).
_MARKED = re.compile("|".join(re.escape(m) for m in (*OPENS, *_REASONING_ONLY_CLOSES)))


def has_reasoning_marker(text: str) -> bool:
    """Whether ``text`` holds a reasoning marker. Runs on every training row: substring scans for a piece of every
    marker first ("think", "THINK", gpt-oss's "analysis<|message|>"), the regex only when one of them hits."""
    hinted = "think" in text or "THINK" in text or "analysis<|message|>" in text
    return hinted and _MARKED.search(text) is not None


@dataclass(frozen=True)
class ReasoningSplit:
    """A text cut at its reasoning block: ``reasoning`` is None when there is none; ``closed`` is False when the block
    was opened but never closed (the output ended inside it), and then ``answer`` is empty."""

    reasoning: str | None
    answer: str
    closed: bool = True
    markers: tuple[str, str] | None = None


def _opening(text: str, start: int) -> tuple[int, tuple[str, str]] | None:
    """(end of the open marker, markers) when ``text`` opens a reasoning block at ``start`` (after whitespace)."""
    k = start
    while k < len(text) and text[k] in " \n\t\r":
        k += 1
    for pair in MARKERS:
        if text.startswith(pair[0], k):
            return k + len(pair[0]), pair
    return None


def _opened_before(text: str, start: int) -> tuple[str, str] | None:
    """The markers whose open string ends just before ``start`` (whitespace aside): the prompt opened the block."""
    head = text[:start].rstrip(" \n\t\r")
    return next((pair for pair in MARKERS if head.endswith(pair[0])), None)


def split_reasoning(text: str, opened: bool = False) -> ReasoningSplit:
    """Cut a model output into reasoning and answer. ``opened``: the prompt already opened the block (its generation
    prompt ends with ``<think>``), so the output starts inside it. A closing marker with no opening one is read the same
    way. Whitespace after the block is not part of the answer."""
    found = _opening(text, 0)
    if found is not None:
        body_start, pair = found
    else:
        closing = next((p for p in MARKERS if p[1] in text and p[1] in _REASONING_ONLY_CLOSES), None)
        if closing is None:
            return ReasoningSplit(None, text) if not opened else ReasoningSplit(text, "", closed=False,
                                                                               markers=MARKERS[-1])
        body_start, pair = 0, closing
    close = text.find(pair[1], body_start)
    if close < 0:
        return ReasoningSplit(text[body_start:], "", closed=False, markers=pair)
    return ReasoningSplit(text[body_start:close], text[close + len(pair[1]):].lstrip(), markers=pair)


def reasoning_end(text: str, start: int, end: int) -> int | None:
    """Where the reasoning block of the assistant segment ``text[start:end]`` ends (after its closing marker and the
    whitespace that follows it, so the answer starts with its first character), when the segment starts with one or
    the generation prompt before it opened one; None otherwise."""
    found = _opening(text, start)
    pair = found[1] if found is not None else _opened_before(text, start)
    if pair is None:
        return None
    close = text.find(pair[1], found[0] if found is not None else start, end)
    if close < 0:
        return None
    k = close + len(pair[1])
    while k < end and text[k] in " \n\t\r":
        k += 1
    return k


def inline_reasoning(content: str) -> str | None:
    """The reasoning written inside a message's content (``<think>...</think>answer``), or None."""
    if not any(c in content for c in CLOSES):
        return None
    split = split_reasoning(content)
    return split.reasoning if split.closed else None


def empty_block(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` holds a reasoning block with nothing but whitespace inside."""
    for open_, close in MARKERS:
        k = text.find(open_, start, end)
        if k >= 0:
            c = text.find(close, k + len(open_), end)
            if c >= 0 and not text[k + len(open_): c].strip():
                return True
    return False
