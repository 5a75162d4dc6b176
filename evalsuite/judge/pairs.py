"""From a results file to what the judge is asked, and from its answers back to verdicts (no model here).

A pair is two columns of one results file; a battery's cases are those both columns answered. Each case becomes two
asks (a first, b first) unless both answers are the same text, which is a tie without asking. The answer a column
gave is its final answer (``details.answer`` after a reasoning block), else its output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.judge.prompt import ORDERS, combine, in_pair_terms, judge_prompt, parse_verdict
from evalsuite.results.judgements import Judgement, PairVerdict
from evalsuite.results.schema import Results


@dataclass(frozen=True)
class PairCase:
    battery: str
    case: str
    turns: tuple[tuple[str, str], ...]
    a: str  # column a's answer
    b: str

    @property
    def identical(self) -> bool:
        return self.a.strip() == self.b.strip()


@dataclass(frozen=True)
class Ask:
    """One question to the judge: a case in one order, as the user message it is sent."""

    battery: str
    case: str
    order: str
    prompt: str


def parse_pair(text: str, columns: list[str]) -> tuple[str, str]:
    """``A:B`` -> (a, b), both columns of the results file and different."""
    a, sep, b = text.partition(":")
    if not sep or not a or not b or ":" in b:
        raise EvalsuiteError(f"--pair: expected COLUMN_A:COLUMN_B, got {text!r}")
    for name in (a, b):
        if name not in columns:
            raise EvalsuiteError(f"--pair: no column {name!r} in the results (have: {', '.join(columns)})")
    if a == b:
        raise EvalsuiteError(f"--pair: a column against itself ({a!r})")
    return a, b


def pair_cases(results: Results, a: str, b: str, batteries: list[str] | None = None) -> dict[str, list[PairCase]]:
    """battery -> the cases both columns answered (not-run samples have no answer), in the battery's order;
    ``batteries`` limits (and checks) them."""
    names = results.batteries()
    for name in batteries or []:
        if name not in names:
            raise EvalsuiteError(f"--battery: no battery {name!r} in the results (have: {', '.join(names)})")
    out: dict[str, list[PairCase]] = {}
    for battery in batteries or names:
        theirs = {s.case: s for s in results.samples_for(battery, b) if s.ran}  # not run: no answer to judge
        _same_prompts(results, battery, a, b, [(s, theirs[s.case]) for s in results.samples_for(battery, a)
                                               if s.case in theirs])
        cases = [PairCase(battery, s.case, tuple(s.turns), s.answer, theirs[s.case].answer)
                 for s in results.samples_for(battery, a) if s.case in theirs and s.ran]
        if cases:
            out[battery] = cases
    if not out:
        raise EvalsuiteError(f"columns {a!r} and {b!r} share no case" + (f" in {', '.join(batteries)}"
                                                                           if batteries else ""))
    return out


def _same_prompts(results: Results, battery: str, a: str, b: str, pairs: list[tuple[Any, Any]]) -> None:
    """Judging two answers side by side means nothing when the columns were asked different things (results files
    merged by hand, a battery edited between two runs): cases pair by id, so the prompts must agree too."""
    for x, y in pairs:
        if x.prompt != y.prompt or x.turns != y.turns:
            where = f"{results.path}: " if results.path is not None else ""
            raise EvalsuiteError(f"{where}{battery} case {x.case!r}: columns {a!r} and {b!r} were asked different "
                                 f"prompts ({x.prompt[:60]!r} vs {y.prompt[:60]!r}); a judge would compare answers "
                                 "to different questions")


def asks_for(cases: list[PairCase], rubric: str) -> list[Ask]:
    """Two asks per case (a first, b first); none for identical answers."""
    out = []
    for c in cases:
        if c.identical:
            continue
        for order in ORDERS:
            first, second = (c.a, c.b) if order == "ab" else (c.b, c.a)
            out.append(Ask(c.battery, c.case, order, judge_prompt(c.turns, first, second, rubric)))
    return out


def judgement(cases: list[PairCase], replies: Mapping[tuple[str, str], str], judge: str, a: str, b: str,
              rubric: str, judge_model: dict[str, Any] | None = None) -> Judgement:
    """The verdicts of one battery from the judge's replies, keyed by (case, order)."""
    verdicts = []
    for c in cases:
        if c.identical:
            verdicts.append(PairVerdict(c.case, "tie", "identical"))
            continue
        answers = [replies[(c.case, order)] for order in ORDERS]
        parsed = [in_pair_terms(parse_verdict(text), order) for text, order in zip(answers, ORDERS, strict=True)]
        verdict, reason = combine(parsed)
        verdicts.append(PairVerdict(c.case, verdict, reason, answers, parsed))
    return Judgement(judge=judge, a=a, b=b, battery=cases[0].battery, rubric=rubric,
                     created=datetime.now(timezone.utc).isoformat(timespec="seconds"), verdicts=verdicts,
                     judge_model=dict(judge_model or {}))


def merge(results: Results, fresh: list[Judgement]) -> None:
    """Put ``fresh`` into ``results``, replacing earlier runs of the same judge, pair and battery."""
    keys = {j.key for j in fresh}
    results.judgements = [j for j in results.judgements if j.key not in keys] + fresh
