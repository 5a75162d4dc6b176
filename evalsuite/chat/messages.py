"""What the encoder and the lint read from a message beyond what the template sees: its text, its reasoning, its tool
calls, and the *shape* rows are grouped by.

A shape is the role sequence, which contents are empty, which extra fields each message carries (``tool_calls``,
reasoning, content parts, OpenAI's ``weight``...) and whether the row has ``tools``. Rows of one shape render the same
way up to their texts when the template only copies content, so a layout is learned once per shape
(``evalsuite.chat.layout``); shapes with extra fields are rendered row by row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from evalsuite.chat.reasoning import inline_reasoning

REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")
# Fields that always make a message non-plain, read by the template or not: the lint checks what the template does
# with them (reasoning, tool calls) and OpenAI's weight changes the labels.
SEMANTIC_KEYS = frozenset({*REASONING_KEYS, "tool_calls", "weight"})


class Turn(NamedTuple):
    role: str
    nonempty: bool
    extras: str = ""  # sorted names of the fields beyond role and a string content ("" for a plain message)


class ShapeKey(NamedTuple):
    turns: tuple[Turn, ...]
    tools: bool = False

    @property
    def plain(self) -> bool:
        """Every message is role + string content and the row has no tools: the shape can be spliced."""
        return not self.tools and not any(t.extras for t in self.turns)

    @property
    def roles(self) -> str:
        return "/".join(t.role for t in self.turns)


def text_of(content: Any) -> str:
    """The text of a content: the string itself, or the text parts of a list joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _extras(m: Mapping[str, Any], read: frozenset[str]) -> str:
    names = [k for k in m if k not in ("role", "content") and (k in SEMANTIC_KEYS or k in read)]
    if not isinstance(m.get("content"), str):
        names.append("content:" + type(m.get("content")).__name__)
    return "+".join(sorted(names))


_PLAIN: dict[tuple[str, bool], Turn] = {}


def turn_of(m: Mapping[str, Any], read: frozenset[str] = frozenset()) -> Turn:
    content = m.get("content")
    if len(m) == 2 and type(content) is str:
        # Plain messages (almost every row) reuse one Turn per (role, emptiness): this runs on every message.
        plain = (m["role"], content != "")
        turn = _PLAIN.get(plain)
        if turn is None:
            turn = _PLAIN[plain] = Turn(*plain)
        return turn
    return Turn(m["role"], text_of(content) != "", _extras(m, read))


def shape_key(messages: Sequence[Mapping[str, Any]], tools: object = None, read: frozenset[str] = frozenset()
              ) -> ShapeKey:
    """The shape of a row. ``read``: the names the template can read (a key outside them and the semantic fields
    cannot change the render, so it does not make a message non-plain)."""
    return ShapeKey(tuple(turn_of(m, read) for m in messages), tools is not None)


def reasoning_of(m: Mapping[str, Any]) -> str | None:
    """A message's reasoning: its reasoning field, else a reasoning block at the start of its content."""
    for key in REASONING_KEYS:
        value = m.get(key)
        if isinstance(value, str) and value.strip():
            return value
    if m.get("role") == "assistant":
        inline = inline_reasoning(text_of(m.get("content")))
        return inline if inline and inline.strip() else None
    return None


def answer_of(m: Mapping[str, Any]) -> str:
    """A message's text without an inline reasoning block."""
    text = text_of(m.get("content"))
    reasoning = inline_reasoning(text) if m.get("role") == "assistant" else None
    if reasoning is None:
        return text
    from evalsuite.chat.reasoning import split_reasoning

    return split_reasoning(text).answer


def call_texts(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, arguments as JSON text) of each tool call of a message."""
    out = []
    for c in m.get("tool_calls") or ():
        inner = c.get("function", c) if isinstance(c, dict) else {}
        args = inner.get("arguments", {})
        out.append((str(inner.get("name", "")), args if isinstance(args, str) else json.dumps(args,
                                                                                              ensure_ascii=False)))
    return out


def trained_turn(m: Mapping[str, Any]) -> bool:
    """Whether an assistant message is trained (OpenAI's ``weight: 0`` turns are context only)."""
    return m.get("weight", 1) != 0
