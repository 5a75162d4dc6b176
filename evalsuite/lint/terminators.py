"""What ends each trained assistant span: the run of added tokens just before its end.

A turn can end with several control tokens (Command-R7B's ``<|END_RESPONSE|><|END_OF_TURN_TOKEN|>``), and a template
can end different turns differently (gpt-oss ends earlier answers with ``<|end|>`` and the last with ``<|return|>``).
The model learns to emit every terminator it is trained on, so each one must contain a token a server stops on. The
run is read from the text (an added token's text is always encoded as that token), so spliced rows need no ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evalsuite.chat.layout import APoint, Layout
from evalsuite.chat.tokenizer import TokenizerInfo

ANSWER_ROLES = ("assistant", "reasoning")
MAX_RUN = 4


@dataclass(frozen=True)
class SpanEnd:
    segment: int  # index of the last trained segment of the span
    tokens: tuple[str, ...]  # its terminator run, in text order ("" when the span ends on content)


class TerminatorReader:
    def __init__(self, tk: TokenizerInfo) -> None:
        self.added = {t for t in tk.added_tokens if t and not t.isspace()}
        self.lengths = sorted({len(t) for t in self.added}, reverse=True)
        self.longest = self.lengths[0] if self.lengths else 0

    def _straddling(self, text: str, end: int, floor: int) -> int:
        """``end`` moved past an added token that starts before it and ends after it: the encoder gives a token to
        the segment its first character is in, so such a token is trained with the span (a boundary found from a
        common prefix can stop inside ``<|end|>`` where another render has ``<|return|>``)."""
        k = end - 1
        while k >= max(floor, end - self.longest):
            if text[k] in "<[":
                for n in self.lengths:
                    if end < k + n <= len(text) and text[k: k + n] in self.added:
                        return k + n
            k -= 1
        return end

    def run_before(self, text: str, end: int, floor: int = 0) -> tuple[str, ...]:
        """The added tokens that end exactly at ``end`` (trailing whitespace skipped), last one last."""
        end = self._straddling(text, end, floor)
        while end > floor and text[end - 1] in " \n\t\r":
            end -= 1
        run: list[str] = []
        while end > floor and len(run) < MAX_RUN:
            hit = next((text[end - n: end] for n in self.lengths if n <= end - floor
                        and text[end - n: end] in self.added), None)
            if hit is None:
                break
            run.append(hit)
            end -= len(hit)
        return tuple(reversed(run))

    def span_ends(self, text: str, bounds: Sequence[int], roles: Sequence[str], trained: Sequence[bool]
                  ) -> list[SpanEnd]:
        """Every maximal run of trained assistant/reasoning segments, with the terminator run at its end."""
        out = []
        n = len(roles)
        for j in range(n):
            if not (trained[j] and roles[j] in ANSWER_ROLES and bounds[j + 1] > bounds[j]):
                continue
            nxt = next((k for k in range(j + 1, n) if bounds[k + 1] > bounds[k]), None)
            if nxt is not None and trained[nxt] and roles[nxt] in ANSWER_ROLES:
                continue
            out.append(SpanEnd(j, self.run_before(text, bounds[j + 1], bounds[j])))
        return out


@dataclass(frozen=True, slots=True)
class BadEnd:
    """A span end of a layout whose terminator run holds no stop id."""

    point: APoint
    terminator: str


class StopCheck:
    """The row pass's terminator judgement: a trained span whose terminator run holds no id the server stops on
    counts into ``unstopped`` (terminator text -> spans). Spliced rows are judged once per layout (their terminators
    are literals); rows rendered in full, one by one. Spans cut off by ``sequence_len`` do not count."""

    def __init__(self, tk: TokenizerInfo, server_stops: set[int], pad_id: int | None, unstopped: Counter[str]
                 ) -> None:
        self.tk = tk
        self.server_stops = server_stops
        self.pad_id = pad_id  # masked by a mask-pad-id collator: never trained
        self.unstopped = unstopped
        self.reader = TerminatorReader(tk)
        self.bad_ends: dict[Any, list[BadEnd]] = {}

    def judge(self, run: Sequence[str]) -> str | None:
        """The terminator run as text when none of its trained tokens is a stop id; None when fine or empty."""
        ids = [self.tk.token_id(t) for t in run]
        trained = [i for i in ids if i is not None and i != self.pad_id]
        if not trained or any(i in self.server_stops for i in trained):
            return None
        return "".join(run)

    def _layout(self, key: Any, layout: Layout) -> list[BadEnd]:
        cached = self.bad_ends.get(key)
        if cached is None:
            cached = []
            text, starts = layout.build(["x"] * len(key.turns))
            bounds = layout.positions(text, starts)
            for end in self.reader.span_ends(text, bounds, layout.roles, layout.trained):
                bad = self.judge(end.tokens)
                if bad is not None:
                    cached.append(BadEnd(layout.points[end.segment + 1], bad))
            self.bad_ends[key] = cached
        return cached

    @staticmethod
    def _kept(enc: Any, pos: int, eff: int) -> bool:
        t = enc.char_to_token(max(pos - 1, 0))
        return t is not None and t < eff

    def spliced(self, key: Any, layout: Layout, text: str, starts: Sequence[int], enc: Any, eff: int) -> bool:
        bad = False
        for end in self._layout(key, layout):
            if self._kept(enc, layout.position(end.point, text, starts), eff):
                self.unstopped[end.terminator] += 1
                bad = True
        return bad

    def row(self, text: str, bounds: Sequence[int], roles: Sequence[str], trained: Sequence[bool], enc: Any,
            eff: int) -> bool:
        bad = False
        for end in self.reader.span_ends(text, bounds, roles, trained):
            run = self.judge(end.tokens)
            if run is not None and self._kept(enc, bounds[end.segment + 1], eff):
                self.unstopped[run] += 1
                bad = True
        return bad
