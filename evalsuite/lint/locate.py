"""Find the row's own text in a render, however the template writes it.

Templates copy a message's content as is, strip it, escape it (``content | tojson`` for tool results), keep only the
answer after a reasoning block, or render tool calls and tool schemas in their own syntax. The lint must know which
characters of a render came from the data: the rest is what the template adds (role markers, injected text), and a
field whose text is nowhere is dropped. For each piece of data (a message's content, its reasoning, its tool calls,
the row's tools) this module first looks for the text and its usual escapes, and otherwise renders the row again with
that piece replaced by a placeholder: the characters that change are where the piece is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalsuite.chat.messages import REASONING_KEYS, text_of
from evalsuite.chat.reasoning import split_reasoning
from evalsuite.chat.template import TemplateRaised
from evalsuite.config.limits import InputLimit, loads_json

Span = tuple[int, int]
RenderRow = Callable[[Sequence[Mapping[str, Any]], Any], str]  # (messages, tools) -> render
TOOLS = -1  # the key of the row's tools in :attr:`Located.spans`

PLACEHOLDER = "\ue0f0"


@dataclass
class Located:
    """Where each message's data sits in one render (message index -> spans; ``TOOLS`` for the row's tools), and
    which fields are nowhere in it (message index -> field names; ``TOOLS`` -> {"tools"})."""

    spans: dict[int, list[Span]] = field(default_factory=dict)
    missing: dict[int, set[str]] = field(default_factory=dict)

    def add(self, i: int, span: Span) -> None:
        self.spans.setdefault(i, []).append(span)

    def lose(self, i: int, name: str) -> None:
        self.missing.setdefault(i, set()).add(name)


def variants(text: str) -> Iterator[str]:
    """The ways a template commonly writes a text: as is, stripped, JSON-encoded (with and without the quotes,
    ASCII-escaped or not)."""
    yield text
    if text.strip() != text:
        yield text.strip()
    for ascii_only in (False, True):
        encoded = json.dumps(text, ensure_ascii=ascii_only)
        yield encoded
        yield encoded[1:-1]


def find_text(render: str, text: str, start: int = 0) -> Span | None:
    if not text.strip():
        return None
    for v in variants(text):
        k = render.find(v, start)
        if k >= 0:
            return k, k + len(v)
    return None


def changed_region(a: str, b: str) -> Span | None:
    """The region of ``a`` that differs from ``b`` (common prefix and suffix removed); None when equal."""
    if a == b:
        return None
    n = min(len(a), len(b))
    lo = 0
    while lo < n and a[lo] == b[lo]:
        lo += 1
    hi = 0
    while hi < n - lo and a[-1 - hi] == b[-1 - hi]:
        hi += 1
    return lo, len(a) - hi


def _scramble(value: Any) -> Any:
    """The same structure with every string and number replaced (keys and booleans kept)."""
    if isinstance(value, str):
        try:
            parsed = loads_json(value)
        except (json.JSONDecodeError, ValueError, InputLimit):
            return PLACEHOLDER * max(1, len(value))
        return json.dumps(_scramble(parsed)) if isinstance(parsed, (dict, list)) else PLACEHOLDER * len(value)
    if isinstance(value, dict):
        return {k: _scramble(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scramble(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value * 7 + 1000003  # other digits, same type
    return value


class Locator:
    """Locates the data of one row (``messages`` + ``tools``) in its render ``text``."""

    def __init__(self, render_row: RenderRow, messages: Sequence[Mapping[str, Any]], tools: Any, text: str) -> None:
        self.render_row = render_row
        self.messages = messages
        self.tools = tools
        self.text = text
        self.out = Located()
        self.cursor = 0

    def _by_perturbing(self, i: int, keys: Sequence[str]) -> Span | bool | None:
        """Render again with these fields of message ``i`` (or the tools, ``i == TOOLS``) scrambled: the region that
        changes, None when nothing does, True when the template refuses the scrambled row (then we cannot tell)."""
        if i == TOOLS:
            msgs, tools = self.messages, _scramble(list(self.tools or ()))
        else:
            changed = dict(self.messages[i])
            for k in keys:
                if changed.get(k) is not None:
                    changed[k] = _scramble(changed[k])
            msgs, tools = [*self.messages[:i], changed, *self.messages[i + 1:]], self.tools
        try:
            other = self.render_row(msgs, tools)
        except TemplateRaised:
            return True
        return changed_region(self.text, other)

    def _find(self, text: str) -> Span | None:
        # Search after the previous piece first: a short text ("hi") also occurs inside earlier literals.
        return find_text(self.text, text, self.cursor) or find_text(self.text, text)

    def _piece(self, i: int, name: str, texts: Sequence[str], keys: Sequence[str]) -> list[Span]:
        found = [s for s in (self._find(t) for t in texts) if s is not None]
        if not found:
            region = self._by_perturbing(i, keys)
            if region is None:
                self.out.lose(i, name)
                return []
            if region is True:
                return []
            assert isinstance(region, tuple)
            found = [region]
        for span in found:
            self.out.add(i, span)
        self.cursor = max(self.cursor, max(b for _a, b in found))
        return found

    def _content(self, i: int, m: Mapping[str, Any], content: str) -> None:
        split = split_reasoning(content) if m.get("role") == "assistant" else None
        if split is None or split.reasoning is None or not split.closed or not split.reasoning.strip():
            self._piece(i, "content", [content], ("content",))
            return
        # Inline reasoning: when the content is not there whole, the reasoning and the answer are located apart
        # (templates keep only the answer of earlier turns).
        whole = self._find(content)
        if whole is not None:
            self.out.add(i, whole)
            self.cursor = max(self.cursor, whole[1])
            return
        reasoning = self._find(split.reasoning)
        if reasoning is None:
            self.out.lose(i, "reasoning")
        else:
            self.out.add(i, reasoning)
        if split.answer.strip():
            self._piece(i, "content", [split.answer], ("content",))

    def locate(self) -> Located:
        for i, m in enumerate(self.messages):
            content = text_of(m.get("content"))
            if content.strip():
                self._content(i, m, content)
            reasoning = next((m[k] for k in REASONING_KEYS if isinstance(m.get(k), str) and m[k].strip()), None)
            if reasoning is not None:
                self._piece(i, "reasoning", [reasoning], REASONING_KEYS)
            if m.get("tool_calls"):
                self._piece(i, "tool_calls", [], ("tool_calls",))
        if self.tools:
            # `tool | tojson` (Qwen), `tojson(indent=4)` (Llama-3.1); other renderings are found by perturbing
            texts = [json.dumps(t, ensure_ascii=False, indent=indent) for t in self.tools for indent in (None, 4)]
            self._piece(TOOLS, "tools", texts, ())
        return self.out


def locate(render_row: RenderRow, messages: Sequence[Mapping[str, Any]], tools: Any, text: str) -> Located:
    return Locator(render_row, messages, tools, text).locate()
