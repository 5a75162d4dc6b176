"""Per-row checks of what the template did to a row's reasoning and tool calls, on rows rendered in full.

Rows with reasoning fields, tool calls or tools, and every row of a template that inspects content (Qwen3, QwQ,
DeepSeek-R1 split content on ``</think>``), are rendered through jinja; for those the render is compared with the
data. Spliced rows copy content verbatim, so their inline reasoning is always there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evalsuite.chat.messages import reasoning_of, text_of, trained_turn
from evalsuite.chat.reasoning import MARKERS
from evalsuite.config.limits import InputLimit, loads_json
from evalsuite.lint.locate import find_text
from evalsuite.lint.terminators import ANSWER_ROLES


@dataclass
class TurnChecks:
    """Counts over the rows checked, for the findings' messages."""

    reasoning_turns: int = 0  # trained assistant turns whose data has reasoning
    dropped_earlier: int = 0  # ... not rendered, in rows where a later turn's reasoning is
    dropped_all: int = 0  # ... not rendered, in rows where no turn's reasoning is
    empty_blocks: int = 0  # empty reasoning blocks in trained spans that the data did not write
    calls_as_text: int = 0  # assistant contents that are a call of a declared tool, outside tool_calls


def count_empty_blocks(text: str, start: int = 0, end: int | None = None) -> int:
    """Reasoning blocks with only whitespace inside, in ``text[start:end]``."""
    end = len(text) if end is None else end
    n = 0
    for open_, close in MARKERS:
        k = text.find(open_, start, end)
        while k >= 0:
            c = text.find(close, k + len(open_), end)
            if c < 0:
                break
            if not text[k + len(open_): c].strip():
                n += 1
            k = text.find(open_, c + len(close), end)
    return n


def _reasoning(acc: TurnChecks, msgs: Sequence[Mapping[str, Any]], text: str) -> bool:
    found = [find_text(text, r) is not None for m in msgs if m["role"] == "assistant" and trained_turn(m)
             for r in (reasoning_of(m),) if r]
    acc.reasoning_turns += len(found)
    lost = found.count(False)
    if not lost:
        return False
    if any(found):
        acc.dropped_earlier += lost
    else:
        acc.dropped_all += lost
    return True


def _empty_blocks(acc: TurnChecks, msgs: Sequence[Mapping[str, Any]], text: str, bounds: Sequence[int],
                  roles: Sequence[str], trained: Sequence[bool]) -> bool:
    rendered = sum(count_empty_blocks(text, bounds[j], bounds[j + 1]) for j, r in enumerate(roles)
                   if trained[j] and r in ANSWER_ROLES)
    if not rendered:
        return False
    written = sum(count_empty_blocks(text_of(m.get("content"))) for m in msgs if m["role"] == "assistant")
    extra = rendered - written
    acc.empty_blocks += max(extra, 0)
    return extra > 0


def tool_names(tools: Any) -> set[str]:
    names = set()
    for t in tools or ():
        inner = t.get("function", t) if isinstance(t, dict) else {}
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            names.add(inner["name"])
    return names


def _is_call(text: str, names: set[str]) -> bool:
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return False
    try:
        value = loads_json(stripped)
    except (json.JSONDecodeError, InputLimit):
        return False
    calls = value if isinstance(value, list) else [value]
    return bool(calls) and all(isinstance(c, dict) and c.get("name") in names and "arguments" in c for c in calls)


def _calls_as_text(acc: TurnChecks, msgs: Sequence[Mapping[str, Any]], tools: Any) -> bool:
    names = tool_names(tools)
    if not names:
        return False
    hits = sum(1 for m in msgs if m["role"] == "assistant" and trained_turn(m) and not m.get("tool_calls")
               and _is_call(text_of(m.get("content")), names))
    acc.calls_as_text += hits
    return hits > 0


def check_turns(acc: TurnChecks, msgs: Sequence[Mapping[str, Any]], tools: Any, text: str, bounds: Sequence[int],
                roles: Sequence[str], trained: Sequence[bool]) -> list[str]:
    """The rules this row breaks, counting into ``acc``."""
    rules = []
    if _reasoning(acc, msgs, text):
        rules.append("reasoning-dropped")
    if _empty_blocks(acc, msgs, text, bounds, roles, trained):
        rules.append("empty-reasoning")
    if _calls_as_text(acc, msgs, tools):
        rules.append("tool-call-as-text")
    return rules
