"""Group rows by shape (role sequence + which contents are empty) and render one exemplar per shape.

Structural rules look at these exemplars only: a template renders every conversation of a shape the same way up to
the contents, so one render per shape answers questions such as "does the training sample end with an open
assistant header". Exemplars use sentinel contents when the template only copies content (so literal text and
content can be told apart exactly) and the shape's first row otherwise, whose data is located in its render however
the template writes it (``evalsuite.lint.locate``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from evalsuite.chat.encode import chat_planner, end_of_turn_token
from evalsuite.chat.layout import Cut, Messages, Planner, ShapeKey, ShapePlan, sentinel_a, sentinel_messages
from evalsuite.chat.template import ASSISTANT_WORDS, TemplateRaised, TemplateRefused
from evalsuite.lint.locate import Located, locate
from evalsuite.lint.setup import LintSetup

Tools = tuple[dict[str, Any], ...] | None

_CORE = re.compile("(?:\u2003\u3000)?\ue000([\ue100-\ue8ff])\ue001(?:\u3000\u2003)?")


@dataclass
class ShapeFacts:
    key: ShapeKey
    rows: list[int] = field(default_factory=list)
    plan: ShapePlan | None = None
    messages: Messages = ()
    tools: Tools = None
    sentinel: bool = False
    cut: Cut | None = None
    error: TemplateRaised | None = None
    located: Located | None = None  # where the exemplar's data is in its render (set with ``cut``)

    def content_spans(self) -> dict[int, list[tuple[int, int]]]:
        """Where each message's data sits in the exemplar render (message index -> spans; ``TOOLS`` -> the tools)."""
        assert self.located is not None
        return self.located.spans

    def missing(self, i: int) -> set[str]:
        """The fields of message ``i`` (``TOOLS``: the row's tools) that are nowhere in the exemplar render."""
        return self.located.missing.get(i, set()) if self.located is not None else set()

    def literal_text(self) -> str:
        """The exemplar render with the data removed (pieces joined by NUL)."""
        assert self.cut is not None
        text = self.cut.text
        spans = sorted(s for v in self.content_spans().values() for s in v)
        out, cursor = [], 0
        for a, b in spans:
            if a > cursor:
                out.append(text[cursor:a])
            cursor = max(cursor, b)
        out.append(text[cursor:])
        return "\x00".join(out)


def _sentinel_located(text: str, key: ShapeKey) -> Located:
    located = Located()
    for m in _CORE.finditer(text):
        located.add(ord(m.group(1)) - 0xE100, (m.start(), m.end()))
    for i, turn in enumerate(key.turns):
        if turn.nonempty and i not in located.spans:
            located.lose(i, "content")
    return located


@dataclass
class Context:
    setup: LintSetup
    planner: Planner | None
    shapes: dict[ShapeKey, ShapeFacts]
    text_rows: list[int]
    eot: str | None
    row_keys: list[ShapeKey | None] = field(default_factory=list)  # each row's shape (None: a text row)

    def render(self, messages: Messages, add_generation_prompt: bool = False, tools: Tools = None) -> str:
        assert self.planner is not None
        return self.planner.render(messages, add_generation_prompt, tools=tools)

    def chat_rows(self) -> int:
        return sum(len(s.rows) for s in self.shapes.values())


def build_context(setup: LintSetup) -> Context:
    shapes: dict[ShapeKey, ShapeFacts] = {}
    text_rows: list[int] = []
    row_keys: list[ShapeKey | None] = []
    has_chat = any(s.messages is not None for s in setup.samples)
    planner = chat_planner(setup.tk, setup.template, setup.train_on_inputs) if setup.template and has_chat else None
    for i, sample in enumerate(setup.samples):
        if sample.messages is None:
            text_rows.append(i)
            row_keys.append(None)
            continue
        assert planner is not None  # run_lint refuses chat rows without a template
        key = planner.key(sample.messages, sample.tools)
        row_keys.append(key)
        facts = shapes.get(key)
        if facts is None:
            facts = shapes[key] = ShapeFacts(key)
        facts.rows.append(i)
    eot = end_of_turn_token(setup.template, setup.tk) if setup.template else None
    ctx = Context(setup, planner, shapes, text_rows, eot, row_keys)
    for facts in shapes.values():
        _exemplar(ctx, facts)
    return ctx


def _exemplar(ctx: Context, facts: ShapeFacts) -> None:
    assert ctx.planner is not None
    plan = facts.plan = ctx.planner.shape(facts.key)
    if plan.error is not None:
        if not isinstance(plan.error, TemplateRefused):  # a broken template is bad input, not a finding
            raise type(plan.error)(f"{ctx.setup.samples[facts.rows[0]].where}: {plan.error}") from None
        facts.error = plan.error
        return
    if plan.cut is not None and plan.why_slow is None:
        facts.messages, facts.sentinel, facts.cut = sentinel_messages(facts.key, sentinel_a), True, plan.cut
        facts.located = _sentinel_located(plan.cut.text, facts.key)
        return
    first = ctx.setup.samples[facts.rows[0]]
    assert first.messages is not None
    facts.messages, facts.tools = first.messages, first.tools
    try:
        facts.cut = ctx.planner.slow_cut(first.messages, tools=first.tools)
    except TemplateRefused as e:
        facts.error = e
        return
    except TemplateRaised as e:
        raise type(e)(f"{first.where}: {e}") from None
    planner = ctx.planner

    def render_row(msgs: Any, tools: Any) -> str:
        return planner.render(tuple(msgs), tools=tools)

    facts.located = locate(render_row, facts.messages, facts.tools, facts.cut.text)


def turn_glue(facts: ShapeFacts, i: int) -> tuple[str, str] | None:
    """(text between message i-1's data and message i's data, text after message i's data up to the next data or
    the end) in the exemplar render; None when they cannot be located."""
    if facts.cut is None:
        return None
    spans = facts.content_spans()
    if not spans.get(i) or not spans.get(i - 1):
        return None
    text = facts.cut.text
    start = min(a for a, _b in spans[i])
    before = [b for _a, b in spans[i - 1] if b <= start]
    if not before:
        return None
    end = max(b for _a, b in spans[i])
    later = [a for v in spans.values() for a, _b in v if a >= end]
    return text[max(before):start], text[end: min(later) if later else len(text)]


def has_role_word(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in ASSISTANT_WORDS)
