"""Group rows by shape (role sequence + which contents are empty) and render one exemplar per shape.

Structural rules look at these exemplars only: a template renders every conversation of a shape the same way up to
the contents, so one render per shape answers questions such as "does the training sample end with an open
assistant header". Exemplars use sentinel contents when the template only copies content (so literal text and
content can be told apart exactly) and the shape's first row otherwise, whose data is located in its render however
the template writes it (``evalsuite.lint.locate``).

Rows arrive as a stream (:meth:`Context.add`): a shape is rendered when its first row comes, and each shape keeps a
count of its rows and the first few (``tally.RowTally``), not the rows themselves. ``kept`` holds the samples of the
rows a finding may show, so nothing else of a row outlives its chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from evalsuite.chat.encode import chat_planner, end_of_turn_token
from evalsuite.chat.layout import Cut, Messages, Planner, ShapeKey, ShapePlan, sentinel_a, sentinel_messages
from evalsuite.chat.template import ASSISTANT_WORDS, TemplateRaised, TemplateRefused
from evalsuite.config.rows import Sample
from evalsuite.errors import EvalsuiteError
from evalsuite.lint.locate import Located, locate
from evalsuite.lint.setup import LintSetup
from evalsuite.lint.tally import RowTally

Tools = tuple[dict[str, Any], ...] | None

_CORE = re.compile("(?:\u2003\u3000)?\ue000([\ue100-\ue8ff])\ue001(?:\u3000\u2003)?")


@dataclass
class ShapeFacts:
    key: ShapeKey
    rows: RowTally = field(default_factory=RowTally)
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
    text_rows: RowTally
    eot: str | None
    kept: dict[int, Sample] = field(default_factory=dict)  # the samples of rows findings may show, by row index

    def render(self, messages: Messages, add_generation_prompt: bool = False, tools: Tools = None) -> str:
        assert self.planner is not None
        return self.planner.render(messages, add_generation_prompt, tools=tools)

    def chat_rows(self) -> int:
        return sum(s.rows.count for s in self.shapes.values())

    def rows(self) -> int:
        return self.chat_rows() + self.text_rows.count

    def keep(self, i: int, sample: Sample) -> None:
        self.kept[i] = sample

    def add(self, i: int, sample: Sample) -> ShapeKey | None:
        """Count row ``i`` into its shape (None: a text row); a shape's exemplar is rendered at its first row."""
        if i == 0:
            self.keep(i, sample)  # whole-dataset findings point at the first row
        if sample.messages is None:
            self.text_rows.add(i)
            return None
        planner = self.planner or self._planner(sample)
        key = planner.key(sample.messages, sample.tools)
        facts = self.shapes.get(key)
        if facts is None:
            facts = self.shapes[key] = ShapeFacts(key)
            _exemplar(self, facts, sample)
        if facts.rows.add(i):
            self.keep(i, sample)
        return key

    def _planner(self, first_chat: Sample) -> Planner:
        setup = self.setup
        if setup.template is None:
            raise EvalsuiteError(f"{setup.tk.path}: the tokenizer has no chat template and none is given, but "
                                 f"{first_chat.where} is a chat row (set chat_template / --chat-template)")
        self.planner = chat_planner(setup.tk, setup.template, setup.train_on_inputs)
        return self.planner


def new_context(setup: LintSetup) -> Context:
    """An empty context; rows are added as they are read."""
    eot = end_of_turn_token(setup.template, setup.tk) if setup.template else None
    return Context(setup, None, {}, RowTally(), eot)


def _exemplar(ctx: Context, facts: ShapeFacts, first: Sample) -> None:
    assert ctx.planner is not None
    plan = facts.plan = ctx.planner.shape(facts.key)
    if plan.error is not None:
        if not isinstance(plan.error, TemplateRefused):  # a broken template is bad input, not a finding
            raise type(plan.error)(f"{first.where}: {plan.error}") from None
        facts.error = plan.error
        return
    if plan.cut is not None and plan.why_slow is None:
        facts.messages, facts.sentinel, facts.cut = sentinel_messages(facts.key, sentinel_a), True, plan.cut
        facts.located = _sentinel_located(plan.cut.text, facts.key)
        return
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
