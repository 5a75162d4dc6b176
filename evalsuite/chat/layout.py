"""Learn a chat template's render diff once per role sequence and splice each row's contents into it.

The render diff (``evalsuite.chat.diff.cut_conversation``) needs ``2n+1`` renders of an ``n``-message conversation.

A :class:`Layout` makes that one render per *shape* (role sequence + which contents are empty): the conversation is
rendered with sentinel contents through the instrumented template (``evalsuite.chat.taint``); when no
content-inspecting expression ran, the render is literals interleaved with (maybe stripped) contents, and the cut's
boundaries are positions inside those literals. A row is then built by splicing its contents in. Every layout is
checked once against a plain render and a plain cut with a second, escape-sensitive sentinel set before it is used.
Rows whose contents are whitespace only (where ``strip`` could reach across a literal), and rows whose contents hold a
terminator string when the shape's cut needed the not-prefix-preserving fallback, always take the slow path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from evalsuite.chat.diff import Cut, Messages, Point, Strip, cut_conversation, resolve, strip_trailing_ws
from evalsuite.chat.messages import ShapeKey, Turn, shape_key
from evalsuite.chat.template import TemplateRaised, compile_instrumented, has_generation_tags, render, template_names

__all__ = ["APoint", "Cut", "Layout", "Messages", "Planner", "ShapeKey", "ShapePlan", "Strip", "Turn",
           "cut_conversation", "planner", "resolve", "sentinel_a", "sentinel_b", "sentinel_messages", "shape_key"]

Tools = tuple[dict[str, Any], ...] | None

_PAD_L, _PAD_R = "\u2003\u3000", "\u3000\u2003"
_CORE = re.compile("\ue000([\ue100-\ue8ff])\ue001")
MAX_SPLICE_MESSAGES = 0x800


def _is_sentinel(ch: str) -> bool:
    return ch in _PAD_L or "\ue000" <= ch <= "\ue8ff"


def sentinel_a(i: int) -> str:
    return f"{_PAD_L}\ue000{chr(0xE100 + i)}\ue001{_PAD_R}"


def sentinel_b(i: int) -> str:
    # Different length, leading/trailing whitespace and characters every escaping scheme changes: a layout that
    # only looked right for sentinel A fails this check.
    return f" \n\t\ue002{chr(0xE100 + i)}\"'\\<&>{{%}}\n" + "x" * (17 + i % 5) + "\ue003 \n"


def sentinel_messages(key: ShapeKey, make: Callable[[int], str]) -> Messages:
    """Placeholder messages of a plain shape (role + string content)."""
    return tuple({"role": t.role, "content": make(i) if t.nonempty else ""} for i, t in enumerate(key.turns))


# -- layouts -----------------------------------------------------------------------------------------------------

Anchor = tuple[int, int]  # (literal index, offset into it)
APoint = Anchor | tuple[Anchor, Anchor]  # a plain anchor, or (end, floor) of a Strip


@dataclass(frozen=True)
class Layout:
    literals: tuple[str, ...]
    slots: tuple[tuple[int, str], ...]  # between literals[k] and literals[k+1]: (message index, transform)
    points: tuple[APoint, ...]
    roles: tuple[str, ...]
    trained: tuple[bool, ...]
    tag_spans: tuple[tuple[Anchor, Anchor], ...] | None
    diff_spans: tuple[tuple[APoint, APoint], ...]
    gen_points: tuple[tuple[int, Anchor | None], ...]
    notes: tuple[str, ...]
    # When a turn end came from the not-prefix-preserving fallback (which searches terminator strings), contents
    # holding those strings could move it: such rows are rendered in full instead.
    guard: tuple[str, ...] = ()

    def accepts(self, contents: Sequence[str]) -> bool:
        """Whether splicing reproduces the full render for these contents (see module docstring)."""
        if any(c.isspace() for c in contents):
            return False
        return not self.guard or not any(g in c for c in contents for g in self.guard)

    def build(self, contents: Sequence[str]) -> tuple[str, list[int]]:
        """The row's text and the start offset of every literal in it."""
        parts: list[str] = []
        starts: list[int] = []
        pos = 0
        literals, slots = self.literals, self.slots
        for k, lit in enumerate(literals):
            starts.append(pos)
            parts.append(lit)
            pos += len(lit)
            if k < len(slots):
                i, transform = slots[k]
                c = contents[i]
                if transform:
                    c = getattr(c, transform)()
                parts.append(c)
                pos += len(c)
        return "".join(parts), starts

    def position(self, p: APoint, text: str, starts: Sequence[int]) -> int:
        """One boundary of a built row (see :meth:`positions`)."""
        if isinstance(p[0], int):
            return starts[p[0]] + p[1]
        (ke, oe), (kf, of) = p
        return strip_trailing_ws(text, starts[kf] + of, starts[ke] + oe)

    def positions(self, text: str, starts: Sequence[int]) -> list[int]:
        """The segment boundaries of a built row (``resolve(self.cut(...).points)`` without building a Cut)."""
        out = []
        for p in self.points:
            if isinstance(p[0], int):
                out.append(starts[p[0]] + p[1])
            else:
                (ke, oe), (kf, of) = p
                out.append(strip_trailing_ws(text, starts[kf] + of, starts[ke] + oe))
        return out

    def cut(self, contents: Sequence[str]) -> Cut:
        text, starts = self.build(contents)

        def at(a: Anchor) -> int:
            return starts[a[0]] + a[1]

        def point(p: APoint) -> Point:
            if isinstance(p[0], int):
                return starts[p[0]] + p[1]
            end, floor = p
            return Strip(at(end), at(floor))

        points = [point(p) for p in self.points]
        tags = None if self.tag_spans is None else tuple((at(a), at(b)) for a, b in self.tag_spans)
        diff = tuple(tuple(resolve((point(a), point(b)), text)) for a, b in self.diff_spans)
        gens = tuple((i, None if a is None else at(a)) for i, a in self.gen_points)
        return Cut(text, points, list(self.roles), list(self.trained), tags, diff, self.notes,  # type: ignore[arg-type]
                   gens, (), starts)


def _literal_map(text: str) -> tuple[list[str], list[tuple[int, str]], list[tuple[int, int]]] | None:
    """Split a sentinel-A render into literals and content slots; None if a sentinel is mangled."""
    literals: list[str] = []
    slots: list[tuple[int, str]] = []
    spans: list[tuple[int, int]] = []
    cursor = 0
    for m in _CORE.finditer(text):
        left = text[m.start() - len(_PAD_L): m.start()] == _PAD_L
        right = text[m.end(): m.end() + len(_PAD_R)] == _PAD_R
        start = m.start() - len(_PAD_L) if left else m.start()
        if start < cursor:
            return None
        end = m.end() + len(_PAD_R) if right else m.end()
        transform = "" if left and right else "lstrip" if right else "rstrip" if left else "strip"
        literals.append(text[cursor:start])
        spans.append((cursor, start))
        slots.append((ord(m.group(1)) - 0xE100, transform))
        cursor = end
    literals.append(text[cursor:])
    spans.append((cursor, len(text)))
    if "\ue000" in "".join(literals) or "\ue001" in "".join(literals):
        return None
    return literals, slots, spans


def _anchor(pos: int, spans: list[tuple[int, int]]) -> Anchor | None:
    for k, (a, b) in enumerate(spans):
        if a <= pos <= b:
            return (k, pos - a)
    return None


def _apoint(p: Point, spans: list[tuple[int, int]]) -> APoint | None:
    if isinstance(p, Strip):
        end, floor = _anchor(p.end, spans), _anchor(p.floor, spans)
        return None if end is None or floor is None else (end, floor)
    return _anchor(p, spans)


def _to_layout(cut: Cut) -> Layout | None:
    mapped = _literal_map(cut.text)
    if mapped is None:
        return None
    literals, slots, spans = mapped
    apoints: list[APoint] = []
    for p in cut.points:
        a = _apoint(p, spans)
        if a is None:
            return None
        apoints.append(a)
    diff: list[tuple[APoint, APoint]] = []
    for x, y in cut.diff_points:
        ax, ay = _apoint(x, spans), _apoint(y, spans)
        if ax is None or ay is None:
            return None
        diff.append((ax, ay))
    tags: tuple[tuple[Anchor, Anchor], ...] | None = None
    if cut.tag_spans is not None:
        pairs: list[tuple[Anchor, Anchor]] = []
        for x, y in cut.tag_spans:
            ax, ay = _anchor(x, spans), _anchor(y, spans)
            if ax is None or ay is None:
                return None
            pairs.append((ax, ay))
        tags = tuple(pairs)
    gens = []
    for i, g in cut.gen_points:
        a = None if g is None else _anchor(g, spans)
        if g is not None and a is None:
            return None
        gens.append((i, a))
    return Layout(tuple(literals), tuple(slots), tuple(apoints), tuple(cut.roles), tuple(cut.trained), tags,
                  tuple(diff), tuple(gens), cut.notes)


@dataclass
class ShapePlan:
    """What the encoder knows about one shape: the sentinel cut, its layout (None: render every row), or the
    error the template raised for it."""

    key: ShapeKey
    cut: Cut | None = None
    layout: Layout | None = None
    error: TemplateRaised | None = None
    why_slow: str | None = None


class Planner:
    """Cuts rows of one (template, special tokens, train_on_inputs, stop strings) combination, caching per shape."""

    def __init__(self, template: str, variables: tuple[tuple[str, str | None], ...], train_on_inputs: bool,
                 stop_strings: tuple[str, ...], controls: tuple[str, ...] = ()) -> None:
        self.template = template
        self.controls = controls
        self.variables = dict(variables)
        self.train_on_inputs = train_on_inputs
        self.stop_strings = stop_strings
        self.tagged = has_generation_tags(template)
        self.read = template_names(template)
        self.shapes: dict[ShapeKey, ShapePlan] = {}

    def key(self, messages: Messages, tools: Tools = None) -> ShapeKey:
        """The shape of a row for this template (keys the template never reads do not count)."""
        return shape_key(messages, tools, self.read)

    def render(self, messages: Messages, add_generation_prompt: bool = False, instrumented: bool = False,
               tools: Tools = None) -> str:
        return render(self.template, messages, add_generation_prompt=add_generation_prompt,
                      special_tokens=self.variables, instrumented=instrumented, tools=tools).text

    def slow_cut(self, messages: Messages, instrumented: bool = False, tools: Tools = None) -> Cut:
        """The cut of one conversation from full renders (``2n+1`` of them)."""
        def fn(msgs: Messages, gen: bool) -> str:
            return self.render(msgs, gen, instrumented, tools)

        def tags(msgs: Messages) -> tuple[tuple[int, int], ...]:
            return render(self.template, msgs, special_tokens=self.variables, track_generation=True,
                          tools=tools).generation_spans

        return cut_conversation(fn, messages, self.train_on_inputs, self.stop_strings,
                                tags if self.tagged else None, _is_sentinel if instrumented else None, self.controls)

    def shape(self, key: ShapeKey) -> ShapePlan:
        plan = self.shapes.get(key)
        if plan is None:
            plan = self.shapes[key] = self._plan(key)
        return plan

    def _plan(self, key: ShapeKey) -> ShapePlan:
        plan = ShapePlan(key)
        if not key.plain:
            plan.why_slow = "its rows carry tools, or message fields beyond role and a string content"
        elif len(key.turns) > MAX_SPLICE_MESSAGES:
            plan.why_slow = "too many messages for sentinel splicing"
        else:
            plan.why_slow = self._sentinel_cut(plan) or self._learn(plan)
        return plan

    def _sentinel_cut(self, plan: ShapePlan) -> str | None:
        """Cut the shape's sentinel render through the instrumented template; why the shape cannot be spliced, or
        None. Sets ``plan.cut``, or ``plan.error`` when the template refuses the shape whatever the contents."""
        _template, tracker, _count = compile_instrumented(self.template)
        fired = tracker.fired
        try:
            plan.cut = self.slow_cut(sentinel_messages(plan.key, sentinel_a), instrumented=True)
        except TemplateRaised as e:
            if tracker.fired == fired:
                plan.error = e  # raised whatever the contents: every row of this shape fails the same way
                return None
            return "the template inspects message content (and raised for sentinel contents)"
        if tracker.fired != fired:
            return "the template inspects message content"
        if plan.cut.touches_content:
            return "a turn boundary of this non-prefix-preserving render depends on the contents"
        if any(g is None for _i, g in plan.cut.gen_points):
            # The generation prompt may reach into the answer (`<think>\n` opened for the model): whether it is a
            # prefix of the training text depends on each row's text, so each row is rendered and judged.
            return "the generation prompt is not a prefix of the render with placeholder contents"
        return None

    def _learn(self, plan: ShapePlan) -> str | None:
        """Turn a sentinel cut into a verified layout (``plan.layout``); why not, or None."""
        if plan.cut is None:  # the shape raised: nothing to learn
            return None
        layout = _to_layout(plan.cut)
        if layout is None:
            return "the template transforms message content"
        if layout.notes:
            layout = replace(layout, guard=self.stop_strings)
        if not self._verify(layout, plan.key):
            return "the spliced layout does not reproduce the template's render"
        plan.layout = layout
        return None

    def _verify(self, layout: Layout, key: ShapeKey) -> bool:
        messages = sentinel_messages(key, sentinel_b)
        try:
            expected = self.slow_cut(messages)
        except TemplateRaised:
            return False
        got = layout.cut([m["content"] for m in messages])
        return (got.text == expected.text and resolve(got.points, got.text) == resolve(expected.points, expected.text)
                and got.roles == expected.roles and got.trained == expected.trained
                and got.tag_spans == expected.tag_spans and got.gen_points == expected.gen_points
                and got.diff_spans == expected.diff_spans)

    def cut(self, messages: Messages, tools: Tools = None) -> Cut:
        """The cut of one row: spliced when its shape has a layout, rendered otherwise."""
        plan = self.shape(self.key(messages, tools))
        if plan.error is not None:
            raise plan.error
        if plan.layout is not None:
            contents = [m["content"] for m in messages]
            if plan.layout.accepts(contents):
                return plan.layout.cut(contents)
        return self.slow_cut(messages, tools=tools)


@lru_cache(maxsize=32)
def planner(template: str, variables: tuple[tuple[str, str | None], ...], train_on_inputs: bool,
            stop_strings: tuple[str, ...], controls: tuple[str, ...] = ()) -> Planner:
    return Planner(template, variables, train_on_inputs, stop_strings, controls)
