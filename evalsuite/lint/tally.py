"""Row counts in constant memory: how many rows a rule or a shape holds, and the first few of them.

A finding reports a count and shows its first rows (``MAX_EXAMPLES``); that is all the lint keeps per rule and per
shape, so its memory does not grow with the dataset. :class:`RowTally` keeps the smallest row numbers it was given
(rows arrive in order chunk by chunk, but not always in order inside a chunk), repeats included: a rule that hits
a row twice counts it twice, as a list of rows did. The helpers combine tallies the way the rules combined lists:
:func:`chained` (concatenation, in order, then the first few) and :func:`merged` (a union of disjoint tallies, the
smallest rows first).
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable

MAX_EXAMPLES = 3


class RowTally:
    __slots__ = ("count", "first", "limit")

    def __init__(self, limit: int = MAX_EXAMPLES) -> None:
        self.count = 0
        self.first: list[int] = []
        self.limit = limit

    def add(self, row: int) -> bool:
        """Count ``row``; True when it is (for now) one of the first rows kept."""
        self.count += 1
        first = self.first
        if len(first) < self.limit:
            insort(first, row)
            return True
        if row < first[-1]:
            insort(first, row)
            first.pop()
            return True
        return False

    def __bool__(self) -> bool:
        return self.count > 0

    def __repr__(self) -> str:
        return f"RowTally(count={self.count}, first={self.first})"


def chained(parts: Iterable[RowTally], k: int = MAX_EXAMPLES) -> tuple[int, list[int]]:
    """(count, first rows) of the parts concatenated in order: what ``len(rows)`` and ``rows[:k]`` said of a list
    built with ``rows += part``."""
    count = 0
    first: list[int] = []
    for p in parts:
        count += p.count
        first += p.first[: k - len(first)]
    return count, first


def merged(parts: Iterable[RowTally], k: int = MAX_EXAMPLES) -> tuple[int, list[int]]:
    """(count, smallest rows) of the union of the distinct tallies among ``parts`` (the same tally twice counts
    once), which hold disjoint rows (the shapes of a dataset): ``len(set(rows))`` and ``sorted(set(rows))[:k]``."""
    seen: dict[int, RowTally] = {id(p): p for p in parts}
    count = sum(p.count for p in seen.values())
    return count, sorted(r for p in seen.values() for r in p.first)[:k]
