"""Cut a rendered conversation into role segments, and learn that cut once per role sequence.

The cut (:func:`cut_conversation`) is the render diff the trainer's labels come from: turn ``i`` ends where the
render of the first ``i+1`` messages ends, and an assistant body starts where the generation prompt after the first
``i`` messages ends. It needs ``2n+1`` renders of an ``n``-message conversation.

A :class:`Layout` makes that one render per *shape* (role sequence + which contents are empty): the conversation is
rendered with sentinel contents through the instrumented template (``template_analysis``); when no
content-inspecting expression ran, the render is literals interleaved with (maybe stripped) contents, and the cut's
boundaries are positions inside those literals. A row is then built by splicing its contents in. Every layout is
checked once against a plain render and a plain cut with a second, escape-sensitive sentinel set before it is used.
Rows whose contents are whitespace only (where ``strip`` could reach across a literal) always take the slow path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from evalsuite.chat_template import TemplateRaised, compile_instrumented, has_generation_tags, render

ShapeKey = tuple[tuple[str, bool], ...]
Messages = tuple[dict[str, str], ...]

_PAD_L, _PAD_R = "\u2003\u3000", "\u3000\u2003"
_CORE = re.compile("\ue000([\ue100-\ue8ff])\ue001")
MAX_SPLICE_MESSAGES = 0x800


def shape_key(messages: Sequence[Mapping[str, str]]) -> ShapeKey:
    return tuple((m["role"], m["content"] != "") for m in messages)


def sentinel_a(i: int) -> str:
    return f"{_PAD_L}\ue000{chr(0xE100 + i)}\ue001{_PAD_R}"


def sentinel_b(i: int) -> str:
    # Different length, leading/trailing whitespace and characters every escaping scheme changes: a layout that
    # only looked right for sentinel A fails this check.
    return f" \n\t\ue002{chr(0xE100 + i)}\"'\\<&>{{%}}\n" + "x" * (17 + i % 5) + "\ue003 \n"


def sentinel_messages(key: ShapeKey, make: Callable[[int], str]) -> Messages:
    return tuple({"role": role, "content": make(i) if nonempty else ""} for i, (role, nonempty) in enumerate(key))


# -- the cut -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Strip:
    """A boundary at ``end`` moved left over trailing whitespace, but not past ``floor``: the newline a template
    writes after an end-of-turn token is never generated at inference, so it is not trained."""

    end: int
    floor: int


Point = int | Strip


def strip_trailing_ws(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in " \n\t\r":
        end -= 1
    return end


def resolve(points: Sequence[Point], text: str) -> list[int]:
    return [p if isinstance(p, int) else strip_trailing_ws(text, p.floor, p.end) for p in points]


@dataclass
class Cut:
    """A rendered conversation and its segments: segment ``j`` is ``[points[j], points[j+1])``."""

    text: str
    points: list[Point]
    roles: list[str]
    trained: list[bool]
    tag_spans: tuple[tuple[int, int], ...] | None = None
    diff_spans: tuple[tuple[int, int], ...] = ()
    notes: tuple[str, ...] = ()
    # (assistant message index, position where its generation prompt ends, or None if that prompt is not a text
    # prefix of the training render): the inference prompt must be a prefix of the training sequence.
    gen_points: tuple[tuple[int, int | None], ...] = ()
    diff_points: tuple[tuple[Point, Point], ...] = ()  # the diff's assistant spans, before resolving strips
    literal_starts: list[int] | None = None  # set on spliced cuts: where each layout literal starts in ``text``


RenderFn = Callable[[Messages, bool], str]


def _fallback_end(full: str, through: str, prev_end: int, stop_strings: Sequence[str]) -> int:
    """Turn end when the render of the first turns is not a prefix of the full render (templates that append a
    header or an EOS to every render): the last terminator inside the common prefix, else the common prefix."""
    lcp = prev_end
    limit = min(len(full), len(through))
    while lcp < limit and full[lcp] == through[lcp]:
        lcp += 1
    region = full[prev_end:lcp]
    best = max((region.rfind(s) + len(s) for s in stop_strings if s and s in region), default=-1)
    return prev_end + best if best >= 0 else lcp


def cut_conversation(render_fn: RenderFn, messages: Messages, train_on_inputs: bool,
                     stop_strings: Sequence[str], tag_fn: Callable[[Messages], tuple[tuple[int, int], ...]] | None
                     ) -> Cut:
    full = render_fn(messages, False)
    points: list[Point] = [0]
    roles: list[str] = []
    trained: list[bool] = []
    notes: list[str] = []
    gen_points: list[tuple[int, int | None]] = []

    def seg(end: Point, role: str, is_trained: bool) -> None:
        points.append(end)
        roles.append(role)
        trained.append(is_trained)

    prev_end = 0
    for i, msg in enumerate(messages):
        try:
            through: str | None = render_fn(messages[: i + 1], False)
        except TemplateRaised:
            through = None
        if through is not None and full.startswith(through):
            end = len(through)
        else:
            notes.append(f"turn {i}: the render of {i + 1} messages is not a prefix of the full render")
            end = _fallback_end(full, through or "", prev_end, stop_strings)
        end = max(end, prev_end)
        if msg["role"] == "assistant":
            body_start = prev_end
            if i:
                try:
                    opened: str | None = render_fn(messages[:i], True)
                except TemplateRaised:
                    opened = None
                ok = opened is not None and full.startswith(opened) and prev_end <= len(opened) <= end
                if ok and opened is not None:
                    body_start = len(opened)
                gen_points.append((i, body_start if ok else None))
            if body_start > prev_end:
                seg(body_start, "header", train_on_inputs)
            strip = Strip(end, body_start)
            seg(strip, "assistant", True)
            seg(end, "header", train_on_inputs)
        elif end > prev_end:
            seg(end, msg["role"], train_on_inputs)
        prev_end = end
    if prev_end < len(full):
        seg(len(full), "header", train_on_inputs)
    pos = resolve(points, full)
    diff_spans = tuple((pos[j], pos[j + 1]) for j, r in enumerate(roles) if r == "assistant")
    diff_points = tuple((points[j], points[j + 1]) for j, r in enumerate(roles) if r == "assistant")
    cut = Cut(full, points, roles, trained, None, diff_spans, tuple(notes), tuple(gen_points), diff_points)
    if tag_fn is not None:
        spans = tag_fn(messages)
        if spans:
            _apply_tags(cut, spans, train_on_inputs)
    return cut


def _apply_tags(cut: Cut, spans: tuple[tuple[int, int], ...], train_on_inputs: bool) -> None:
    """With ``{% generation %}`` tags the tags decide what is trained (as in TRL); roles still come from the diff."""
    pos = resolve(cut.points, cut.text)
    points: list[Point] = [cut.points[0]]
    roles: list[str] = []
    trained: list[bool] = []
    for j, role in enumerate(cut.roles):
        a, b = pos[j], pos[j + 1]
        inner = sorted({p for s in spans for p in s if a < p < b})
        bounds: list[Point] = [*inner, cut.points[j + 1]]
        bpos = [a, *inner, b]
        for k, bound in enumerate(bounds):
            x, y = bpos[k], bpos[k + 1]
            points.append(bound)
            roles.append(role)
            trained.append(train_on_inputs or any(s <= x and y <= e for s, e in spans))
    cut.points, cut.roles, cut.trained, cut.tag_spans = points, roles, trained, spans


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
                 stop_strings: tuple[str, ...]) -> None:
        self.template = template
        self.variables = dict(variables)
        self.train_on_inputs = train_on_inputs
        self.stop_strings = stop_strings
        self.tagged = has_generation_tags(template)
        self.shapes: dict[ShapeKey, ShapePlan] = {}

    def render(self, messages: Messages, add_generation_prompt: bool = False, instrumented: bool = False) -> str:
        return render(self.template, messages, add_generation_prompt=add_generation_prompt,
                      special_tokens=self.variables, instrumented=instrumented).text

    def _tags(self, messages: Messages) -> tuple[tuple[int, int], ...]:
        return render(self.template, messages, special_tokens=self.variables, track_generation=True
                      ).generation_spans

    def slow_cut(self, messages: Messages, instrumented: bool = False) -> Cut:
        def fn(msgs: Messages, gen: bool) -> str:
            return self.render(msgs, gen, instrumented)

        return cut_conversation(fn, messages, self.train_on_inputs, self.stop_strings,
                                self._tags if self.tagged else None)

    def shape(self, key: ShapeKey) -> ShapePlan:
        plan = self.shapes.get(key)
        if plan is None:
            plan = self.shapes[key] = self._plan(key)
        return plan

    def _plan(self, key: ShapeKey) -> ShapePlan:
        plan = ShapePlan(key)
        if len(key) > MAX_SPLICE_MESSAGES:
            plan.why_slow = "too many messages for sentinel splicing"
            return plan
        _template, tracker, _count = compile_instrumented(self.template)
        messages = sentinel_messages(key, sentinel_a)
        fired = tracker.fired
        try:
            plan.cut = self.slow_cut(messages, instrumented=True)
        except TemplateRaised as e:
            if tracker.fired == fired:
                plan.error = e  # raised whatever the contents: every row of this shape fails the same way
            else:
                plan.why_slow = "the template inspects message content (and raised for sentinel contents)"
            return plan
        if tracker.fired != fired:
            plan.why_slow = "the template inspects message content"
            return plan
        layout = _to_layout(plan.cut)
        if layout is None:
            plan.why_slow = "the template transforms message content"
            return plan
        if not self._verify(layout, key):
            plan.why_slow = "the spliced layout does not reproduce the template's render"
            return plan
        plan.layout = layout
        return plan

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

    def cut(self, messages: Messages) -> Cut:
        """The cut of one row: spliced when its shape has a layout, rendered otherwise."""
        plan = self.shape(shape_key(messages))
        if plan.error is not None:
            raise plan.error
        contents = [m["content"] for m in messages]
        if plan.layout is not None and not any(c.isspace() for c in contents):
            return plan.layout.cut(contents)
        return self.slow_cut(messages)


@lru_cache(maxsize=32)
def planner(template: str, variables: tuple[tuple[str, str | None], ...], train_on_inputs: bool,
            stop_strings: tuple[str, ...]) -> Planner:
    return Planner(template, variables, train_on_inputs, stop_strings)
