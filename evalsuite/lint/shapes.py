"""Group rows by shape (role sequence + which contents are empty) and render one exemplar per shape.

Structural rules look at these exemplars only: a template renders every conversation of a shape the same way up to
the contents, so one render per shape answers questions such as "does the training sample end with an open
assistant header". Exemplars use sentinel contents when the template only copies content (so literal text and
content can be told apart exactly) and the shape's first row otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from evalsuite.chat.encode import chat_planner, end_of_turn_token
from evalsuite.chat.layout import Cut, Messages, Planner, ShapeKey, ShapePlan, sentinel_a, sentinel_messages, shape_key
from evalsuite.chat.template import ASSISTANT_WORDS, TemplateRaised, TemplateRefused
from evalsuite.lint.setup import LintSetup

_CORE = re.compile("(?:\u2003\u3000)?\ue000([\ue100-\ue8ff])\ue001(?:\u3000\u2003)?")


@dataclass
class ShapeFacts:
    key: ShapeKey
    rows: list[int] = field(default_factory=list)
    plan: ShapePlan | None = None
    messages: Messages = ()
    sentinel: bool = False
    cut: Cut | None = None
    error: TemplateRaised | None = None

    def content_spans(self) -> dict[int, list[tuple[int, int]]]:
        """Where each message's content sits in the exemplar render (message index -> spans)."""
        assert self.cut is not None
        text = self.cut.text
        out: dict[int, list[tuple[int, int]]] = {}
        if self.sentinel:
            for m in _CORE.finditer(text):
                i = ord(m.group(1)) - 0xE100
                out.setdefault(i, []).append((m.start(), m.end()))
            return out
        cursor = 0
        for i, msg in enumerate(self.messages):
            c = msg["content"]
            k = text.find(c, cursor) if c else -1
            if k >= 0:
                out[i] = [(k, k + len(c))]
                cursor = k + len(c)
        return out

    def literal_text(self) -> str:
        """The exemplar render with contents removed."""
        assert self.cut is not None
        text = self.cut.text
        spans = sorted(s for v in self.content_spans().values() for s in v)
        out, cursor = [], 0
        for a, b in spans:
            out.append(text[cursor:a])
            cursor = max(cursor, b)
        out.append(text[cursor:])
        return "\x00".join(out)


@dataclass
class Context:
    setup: LintSetup
    planner: Planner | None
    shapes: dict[ShapeKey, ShapeFacts]
    text_rows: list[int]
    eot: str | None

    def render(self, messages: Messages, add_generation_prompt: bool = False) -> str:
        assert self.planner is not None
        return self.planner.render(messages, add_generation_prompt)

    def chat_rows(self) -> int:
        return sum(len(s.rows) for s in self.shapes.values())


def build_context(setup: LintSetup) -> Context:
    shapes: dict[ShapeKey, ShapeFacts] = {}
    text_rows: list[int] = []
    for i, sample in enumerate(setup.samples):
        if sample.messages is None:
            text_rows.append(i)
            continue
        key = shape_key(sample.messages)
        facts = shapes.get(key)
        if facts is None:
            facts = shapes[key] = ShapeFacts(key)
        facts.rows.append(i)
    planner = chat_planner(setup.tk, setup.template, setup.train_on_inputs) if setup.template and shapes else None
    eot = end_of_turn_token(setup.template, setup.tk) if setup.template else None
    ctx = Context(setup, planner, shapes, text_rows, eot)
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
        return
    first = ctx.setup.samples[facts.rows[0]].messages
    assert first is not None
    facts.messages = first
    try:
        facts.cut = ctx.planner.slow_cut(first)
    except TemplateRefused as e:
        facts.error = e
    except TemplateRaised as e:
        raise type(e)(f"{ctx.setup.samples[facts.rows[0]].where}: {e}") from None


def turn_glue(facts: ShapeFacts, i: int) -> tuple[str, str] | None:
    """(text between message i-1's content and message i's content, text after message i's content up to the
    next content or the end) in the exemplar render; None when the contents cannot be located."""
    if facts.cut is None:
        return None
    spans = facts.content_spans()
    if i not in spans or i - 1 not in spans:
        return None
    text = facts.cut.text
    start = spans[i][-1][0]
    before_end = max(b for a, b in spans[i - 1] if b <= start) if any(b <= start for a, b in spans[i - 1]) else None
    if before_end is None:
        return None
    end = spans[i][-1][1]
    later = [a for v in spans.values() for a, _b in v if a >= end]
    return text[before_end:start], text[end: min(later) if later else len(text)]


def has_role_word(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in ASSISTANT_WORDS)
