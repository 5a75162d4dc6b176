"""The render diff: cut a rendered conversation into role segments, as the trainer's labels need them.

Turn ``i`` ends where the render of the first ``i+1`` messages ends; an assistant body starts where the generation
prompt after the first ``i`` messages ends, and stops before the whitespace after its terminator (never generated at
inference, so never trained). Templates that append something to every render (a header, an EOS) are not
prefix-preserving; there a turn ends at its last terminator inside the common prefix. With ``{% generation %}`` tags
the tags decide what is trained, as in TRL. Boundaries are kept symbolic (:class:`Strip`) so that a layout learned
from sentinel contents (``evalsuite.chat.layout``) resolves them on each real row exactly as a full render would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalsuite.chat.messages import text_of, trained_turn
from evalsuite.chat.template import TemplateRaised

Messages = tuple[dict[str, Any], ...]


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
    # (trained assistant message index, position where its generation prompt ends, or None if that prompt is not a
    # text prefix of the training render): the inference prompt must be a prefix of the training sequence.
    gen_points: tuple[tuple[int, int | None], ...] = ()
    diff_points: tuple[tuple[Point, Point], ...] = ()  # the diff's assistant spans, before resolving strips
    literal_starts: list[int] | None = None  # set on spliced cuts: where each layout literal starts in ``text``
    # Set when a fallback turn end was decided next to content (only known for sentinel renders): the same cut
    # with other contents could differ, so such a shape is never spliced.
    touches_content: bool = False


RenderFn = Callable[[Messages, bool], str]


def _last_stop(text: str, start: int, end: int, stop_strings: Sequence[str]) -> int:
    """The end of the last stop string inside ``text[start:end]``, or -1."""
    return max((text.rfind(s, start, end) + len(s) for s in stop_strings if s and text.find(s, start, end) >= 0),
               default=-1)


def _past_control(text: str, pos: int, controls: Sequence[str]) -> int:
    """``pos`` moved to the end of a control string it falls inside (the encoder gives a token to the segment its
    first character is in, so the boundary is where that token ends)."""
    for c in controls:
        j = text.find(c, max(0, pos - len(c) + 1), pos + len(c))
        if 0 <= j < pos < j + len(c):
            return j + len(c)
    return pos


def _fallback_end(full: str, through: str, prev_end: int, stop_strings: Sequence[str],
                  is_content: Callable[[str], bool] | None = None, next_text: str = "",
                  controls: Sequence[str] = ()) -> tuple[int, bool]:
    """Turn end when the render of the first turns is not a prefix of the full render (templates that append a
    header or an EOS to every render, or write the last turn differently: Qwen3's reasoning, gpt-oss's <|return|>):
    the last terminator inside the common prefix; else the common prefix (past a control token it cuts), extended
    to the last terminator before the next message's text. The flag says whether the common prefix stopped at
    content (``is_content`` marks sentinel characters)."""
    lcp = prev_end
    limit = min(len(full), len(through))
    while lcp < limit and full[lcp] == through[lcp]:
        lcp += 1
    touches = is_content is not None and any(lcp < len(t) and is_content(t[lcp]) for t in (full, through))
    best = _last_stop(full, prev_end, lcp, stop_strings)
    if best >= 0:
        return best, touches
    end = _past_control(full, lcp, controls)
    nxt = full.find(next_text, end) if next_text else -1
    if nxt > end:
        end = max(end, _last_stop(full, end, nxt, stop_strings))
    return end, touches


@dataclass
class _Builder:
    """Accumulates the segments of one conversation's render while :func:`cut_conversation` walks its turns."""

    render_fn: RenderFn
    messages: Messages
    full: str
    train_on_inputs: bool
    controls: Sequence[str] = ()
    points: list[Point] = field(default_factory=lambda: [0])
    roles: list[str] = field(default_factory=list)
    trained: list[bool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gen_points: list[tuple[int, int | None]] = field(default_factory=list)
    touches_content: bool = False

    def seg(self, end: Point, role: str, is_trained: bool) -> None:
        self.points.append(end)
        self.roles.append(role)
        self.trained.append(is_trained)

    def _render(self, k: int, gen: bool) -> str | None:
        try:
            return self.render_fn(self.messages[:k], gen)
        except TemplateRaised:
            return None

    def turn_end(self, i: int, prev_end: int, stop_strings: Sequence[str],
                 is_content: Callable[[str], bool] | None) -> int:
        """Where message ``i`` ends in the full render (see the module docstring)."""
        through = self._render(i + 1, False)
        if through is not None and self.full.startswith(through):
            return max(len(through), prev_end)
        self.notes.append(f"turn {i}: the render of {i + 1} messages is not a prefix of the full render")
        following = text_of(self.messages[i + 1].get("content")) if i + 1 < len(self.messages) else ""
        end, touched = _fallback_end(self.full, through or "", prev_end, stop_strings, is_content, following,
                                     self.controls)
        self.touches_content = self.touches_content or touched
        return max(end, prev_end)

    def assistant(self, i: int, prev_end: int, end: int) -> None:
        """An assistant turn: the generation prompt's header (a prompt role), the body up to its stripped end
        (trained unless the message says ``weight: 0``), and the whitespace after it."""
        body_start = prev_end
        trained = trained_turn(self.messages[i])
        if i:
            opened = self._render(i, True)
            ok = opened is not None and self.full.startswith(opened) and prev_end <= len(opened) <= end
            if ok and opened is not None:
                body_start = len(opened)
            if trained:  # an untrained turn (weight 0) is context: its prompt is never a training target's
                self.gen_points.append((i, body_start if ok else None))
        if body_start > prev_end:
            self.seg(body_start, "header", self.train_on_inputs)
        self.seg(Strip(end, body_start), "assistant", trained)
        self.seg(end, "header", self.train_on_inputs)

    def finish(self, prev_end: int) -> Cut:
        if prev_end < len(self.full):
            self.seg(len(self.full), "header", self.train_on_inputs)
        pos = resolve(self.points, self.full)
        roles = self.roles
        diff_spans = tuple((pos[j], pos[j + 1]) for j, r in enumerate(roles) if r == "assistant")
        diff_points = tuple((self.points[j], self.points[j + 1]) for j, r in enumerate(roles) if r == "assistant")
        return Cut(self.full, self.points, roles, self.trained, None, diff_spans, tuple(self.notes),
                   tuple(self.gen_points), diff_points, touches_content=self.touches_content)


def cut_conversation(render_fn: RenderFn, messages: Messages, train_on_inputs: bool,
                     stop_strings: Sequence[str], tag_fn: Callable[[Messages], tuple[tuple[int, int], ...]] | None,
                     is_content: Callable[[str], bool] | None = None, controls: Sequence[str] = ()) -> Cut:
    """Cut a conversation into role segments. ``controls`` are the tokenizer's added-token strings (a turn boundary
    never splits one)."""
    b = _Builder(render_fn, messages, render_fn(messages, False), train_on_inputs, controls)
    prev_end = 0
    for i, msg in enumerate(messages):
        end = b.turn_end(i, prev_end, stop_strings, is_content)
        if msg["role"] == "assistant":
            b.assistant(i, prev_end, end)
        elif end > prev_end:
            b.seg(end, msg["role"], train_on_inputs)
        prev_end = end
    cut = b.finish(prev_end)
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
