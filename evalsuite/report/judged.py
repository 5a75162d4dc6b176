"""The report's judge part: per battery, each judged pair's win/tie/loss with the Wilson interval of the first
column's share of the decided cases, and every case's verdict next to the two answers it was about."""

from __future__ import annotations

from dataclasses import dataclass

from evalsuite.report.cases import Turn, conversation
from evalsuite.report.columns import Column
from evalsuite.results.judgements import Judgement, JudgeSummary, PairVerdict, summarise
from evalsuite.results.schema import Results

REASON_TEXT = {"agree": "both orders agree", "inconsistent": "the two orders disagree: a tie",
               "unparseable": "an answer named no verdict: a tie", "identical": "the same answer: a tie, not asked"}


@dataclass
class JudgeRow:
    case: str
    turns: list[Turn]
    a: str
    b: str
    verdict: PairVerdict
    winner: str  # a column label, or "tie"

    @property
    def why(self) -> str:
        return REASON_TEXT.get(self.verdict.reason, self.verdict.reason)


@dataclass
class JudgeView:
    file: str
    judge: str
    a: str  # labels of the two columns
    b: str
    summary: JudgeSummary
    rows: list[JudgeRow]
    rubric: str

    @property
    def headline(self) -> str:
        s = self.summary
        return f"{self.a} {s.a_wins} · tie {s.ties} · {self.b} {s.b_wins}"

    @property
    def share(self) -> str:
        s = self.summary
        if not s.decided:
            return "no case decided"
        return (f"{self.a} preferred in {s.a_wins}/{s.decided} decided cases: {100 * (s.share or 0):.0f}% "
                f"[{100 * s.share_low:.0f}%, {100 * s.share_high:.0f}%], sign test p={s.p:.3g}")

    @property
    def counted(self) -> str:
        s = self.summary
        return (f"{s.inconsistent} with the orders disagreeing, {s.unparseable} unparseable judge answers of "
                f"{2 * (s.n - s.identical)}, {s.identical} identical answers")


def judge_views(battery: str, cols: list[Column]) -> list[JudgeView]:
    """Every judgement on ``battery`` in the report's files, once per file."""
    files = {c.file: c.results for c in cols}
    labels = {(c.file, c.name): c.label for c in cols}
    return [_view(file, results, j, labels) for file, results in files.items()
            for j in results.judgements_for(battery)]


def _view(file: str, results: Results, j: Judgement, labels: dict[tuple[str, str], str]) -> JudgeView:
    a, b = labels.get((file, j.a), j.a), labels.get((file, j.b), j.b)
    mine = {s.case: s for s in results.samples_for(j.battery, j.a)}
    theirs = {s.case: s for s in results.samples_for(j.battery, j.b)}
    rows = [JudgeRow(v.case, conversation(mine[v.case]), mine[v.case].answer, theirs[v.case].answer, v,
                     {"a": a, "b": b}.get(v.verdict, "tie"))
            for v in j.verdicts if v.case in mine and v.case in theirs]
    return JudgeView(file, j.judge, a, b, summarise(j), rows, j.rubric)

