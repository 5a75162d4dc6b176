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
from dataclasses import dataclass

from evalsuite.chat.template import TemplateRaised

Messages = tuple[dict[str, str], ...]


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
    # Set when a fallback turn end was decided next to content (only known for sentinel renders): the same cut
    # with other contents could differ, so such a shape is never spliced.
    touches_content: bool = False


RenderFn = Callable[[Messages, bool], str]


def _fallback_end(full: str, through: str, prev_end: int, stop_strings: Sequence[str],
                  is_content: Callable[[str], bool] | None = None) -> tuple[int, bool]:
    """Turn end when the render of the first turns is not a prefix of the full render (templates that append a
    header or an EOS to every render): the last terminator inside the common prefix, else the common prefix.
    The flag says whether the common prefix stopped at content (``is_content`` marks sentinel characters)."""
    lcp = prev_end
    limit = min(len(full), len(through))
    while lcp < limit and full[lcp] == through[lcp]:
        lcp += 1
    touches = is_content is not None and any(lcp < len(t) and is_content(t[lcp]) for t in (full, through))
    region = full[prev_end:lcp]
    best = max((region.rfind(s) + len(s) for s in stop_strings if s and s in region), default=-1)
    return (prev_end + best if best >= 0 else lcp), touches


def cut_conversation(render_fn: RenderFn, messages: Messages, train_on_inputs: bool,
                     stop_strings: Sequence[str], tag_fn: Callable[[Messages], tuple[tuple[int, int], ...]] | None,
                     is_content: Callable[[str], bool] | None = None) -> Cut:
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
    touches_content = False
    for i, msg in enumerate(messages):
        try:
            through: str | None = render_fn(messages[: i + 1], False)
        except TemplateRaised:
            through = None
        if through is not None and full.startswith(through):
            end = len(through)
        else:
            notes.append(f"turn {i}: the render of {i + 1} messages is not a prefix of the full render")
            end, touched = _fallback_end(full, through or "", prev_end, stop_strings, is_content)
            touches_content = touches_content or touched
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
    cut = Cut(full, points, roles, trained, None, diff_spans, tuple(notes), tuple(gen_points), diff_points,
              touches_content=touches_content)
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
