"""Pairwise judge verdicts in a results file (the ``judgements`` section, its own ``version`` 1) and their summary.

``evalsuite judge`` asks a judge model which of two columns answered each case better, in both orders (position
swap). The section is additive: a file without it loads as before, and a file with it is still ``schema_version`` 1::

    "judgements": {"version": 1, "runs": [
      {"judge": "NAME", "judge_model": {...}, "a": COLUMN, "b": COLUMN, "battery": NAME, "rubric": TEXT,
       "created": ISO-8601, "verdicts": [
         {"case": ID, "verdict": "a"|"b"|"tie", "reason": "agree"|"inconsistent"|"unparseable"|"identical",
          "answers": [JUDGE'S ANSWER with a first, with b first], "parsed": ["a"|"b"|"tie"|null, ...]}]}]}

A verdict counts only when both orders agree (``agree``); orders that disagree (a position-biased judge) and
answers that could not be parsed are ties, and both are counted, never dropped. :func:`summarise` gives the
win/tie/loss counts and the Wilson interval of ``a``'s share of the decided cases (one implementation:
:mod:`evalsuite.results.stats`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

JUDGEMENTS_VERSION = 1
SIDES = ("a", "b", "tie")
REASONS = ("agree", "inconsistent", "unparseable", "identical")


@dataclass
class PairVerdict:
    """One case: the verdict and how it was reached (``answers``/``parsed``: order a-first, then b-first; both
    ``parsed`` values are already in the pair's a/b naming)."""

    case: str
    verdict: str
    reason: str
    answers: list[str] = field(default_factory=list)
    parsed: list[str | None] = field(default_factory=list)


@dataclass
class Judgement:
    """One judge on one pair of columns over one battery."""

    judge: str
    a: str
    b: str
    battery: str
    rubric: str
    created: str
    verdicts: list[PairVerdict]
    judge_model: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.judge, self.a, self.b, self.battery

    def verdict(self, case: str) -> PairVerdict | None:
        return next((v for v in self.verdicts if v.case == case), None)


@dataclass(frozen=True)
class JudgeSummary:
    n: int
    a_wins: int
    b_wins: int
    ties: int
    inconsistent: int  # cases whose two orders disagreed (ties)
    unparseable: int  # judge answers (of 2 per asked case) that named no verdict
    identical: int  # cases with the same answer in both columns (ties, not asked)
    share_low: float  # Wilson interval of a's share of the decided cases
    share_high: float
    p: float  # exact two-sided sign test on the decided cases

    @property
    def decided(self) -> int:
        return self.a_wins + self.b_wins

    @property
    def share(self) -> float | None:
        return self.a_wins / self.decided if self.decided else None


def summarise(j: Judgement, confidence: float = 0.95) -> JudgeSummary:
    from evalsuite.results.stats import binomial_two_sided_p, wilson_interval  # numpy: only when summarising

    count = {s: sum(v.verdict == s for v in j.verdicts) for s in SIDES}
    decided = count["a"] + count["b"]
    low, high = wilson_interval(count["a"], decided, confidence)
    return JudgeSummary(
        n=len(j.verdicts), a_wins=count["a"], b_wins=count["b"], ties=count["tie"],
        inconsistent=sum(v.reason == "inconsistent" for v in j.verdicts),
        unparseable=sum(p is None for v in j.verdicts for p in v.parsed),
        identical=sum(v.reason == "identical" for v in j.verdicts),
        share_low=low, share_high=high, p=binomial_two_sided_p(count["a"], decided))


def judgements_dict(runs: list[Judgement]) -> dict[str, Any]:
    return {"version": JUDGEMENTS_VERSION, "runs": [asdict(j) for j in runs]}
