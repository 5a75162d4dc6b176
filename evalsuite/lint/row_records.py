"""The records of the lint's row pass: a row as it comes in (:class:`Row`), what one row comes to
(:class:`RowFacts`), a chunk between its stages (:class:`Spliced` rows waiting for their encoding, :class:`Encoded`
after the tokenizer calls) and what the whole pass leaves for the rules (:class:`RowPass`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from evalsuite.chat.encode import RowCut
from evalsuite.chat.layout import Layout, ShapeKey
from evalsuite.config.rows import Sample
from evalsuite.lint.tally import MAX_EXAMPLES, RowTally, merged
from evalsuite.lint.turns import TurnChecks


@dataclass(slots=True)
class RowFacts:
    trained: int = 0
    has_trained_stop: bool = False
    stop_cut_off: bool = False
    straddles: bool = False
    prompt_trained: bool = False
    double_eos: bool = False
    bos_pair: tuple[int, int] | None = None


class Spliced(NamedTuple):
    """A row built from its shape's layout (no jinja), waiting for its encoding."""

    row: int
    text: str
    bounds: list[int]
    roles: Sequence[str]
    trained: Sequence[bool]
    layout: Layout
    starts: list[int]
    key: ShapeKey
    msgs: Sequence[dict[str, Any]]


class Row(NamedTuple):
    """A row of the chunk being checked: its index in the dataset, its sample and its shape (None: a text row)."""

    row: int
    sample: Sample
    key: ShapeKey | None


class Encoded(NamedTuple):
    """One chunk after the tokenizer calls: spliced rows, rows cut by full renders, text rows and their prompts."""

    spliced: list[Spliced]
    encs: list[Any]
    cuts: list[tuple[int, RowCut]]
    cut_encs: list[Any]
    text_rows: list[tuple[int, RowCut]]
    penc: list[Any]


@dataclass
class RowPass:
    rows: int = 0
    tokens: int = 0
    truncated: int = 0
    role_tokens: Counter[str] = field(default_factory=Counter)
    role_trained: Counter[str] = field(default_factory=Counter)
    # rule -> shape (None: text rows) -> its rows: per shape, so that rules can join them with whole shapes
    hits: dict[str, dict[ShapeKey | None, RowTally]] = field(default_factory=dict)
    special_found: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    chars: set[str] = field(default_factory=set)
    unstopped: Counter[str] = field(default_factory=Counter)  # trained terminator runs no stop id is in
    prompt_gap: tuple[Sample, int] | None = None  # the first row whose prompt is not a text prefix, its turn
    turns: TurnChecks = field(default_factory=TurnChecks)
    keep: int = MAX_EXAMPLES  # first rows kept per rule and shape

    def tally(self, rule: str) -> RowTally:
        """Every row ``rule`` hit (count, first rows), whatever its shape."""
        out = RowTally(self.keep)
        out.count, out.first = merged(self.hits.get(rule, {}).values(), self.keep)
        return out
