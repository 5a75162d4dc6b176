"""The judge and its report part on hand-made results: verdicts written by hand, the winner each case must show
named by hand, answers after a reasoning block, case ids holding colons, and the one-order tie."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine, register
from hand_results import write
from report_support import md_cells, md_tables, parse

from evalsuite.judge.pairs import asks_for, pair_cases
from evalsuite.judge.prompt import combine
from evalsuite.judge.run import JudgeRequest, run_judge
from evalsuite.probe.options import ProbeOptions
from evalsuite.report import build_report
from evalsuite.results.io import load_results

COLUMNS = [("base", "base"), ("lora", "adapter")]


@pytest.mark.parametrize(("parsed", "expected"), [
    (["a", "a"], ("a", "agree")), (["b", "b"], ("b", "agree")), (["tie", "tie"], ("tie", "agree")),
    # a win in one order and a tie in the other is no win: the orders disagree
    (["a", "tie"], ("tie", "inconsistent")), (["tie", "a"], ("tie", "inconsistent")),
    (["tie", "b"], ("tie", "inconsistent")), (["b", "tie"], ("tie", "inconsistent")),
    (["a", "b"], ("tie", "inconsistent")), (["a", None], ("tie", "unparseable")),
    ([None, "tie"], ("tie", "unparseable")),
])
def test_two_orders_decide_only_when_they_agree(parsed: list[str | None], expected: tuple[str, str]) -> None:
    assert combine(parsed) == expected


def _reasoned(answer: str, thought: str) -> dict[str, Any]:
    return {"answer": answer, "reasoning": thought}


def test_the_judge_sees_the_answer_after_the_reasoning(tmp_path: Path) -> None:
    rows = [("open", "r1", "lora", "<think>the capital, surely</think>Paris", True, "eos", 1.0,
             _reasoned("Paris", "the capital, surely")),
            ("open", "r1", "base", "<think>hmm, Lyon?</think>Lyon", False, "eos", 0.0, _reasoned("Lyon", "hmm, Lyon?")),
            # the same answer after different reasoning: identical, a tie without asking
            ("open", "r2", "lora", "<think>short</think>42", True, "eos", 1.0, _reasoned("42", "short")),
            ("open", "r2", "base", "<think>a long way round</think>42", True, "eos", 1.0,
             _reasoned("42", "a long way round"))]
    results = load_results(write(tmp_path / "r.json", COLUMNS, rows))
    cases = {c.case: c for c in pair_cases(results, "lora", "base")["open"]}
    assert (cases["r1"].a, cases["r1"].b) == ("Paris", "Lyon")
    assert cases["r2"].identical and not cases["r1"].identical
    asks = asks_for(list(cases.values()), "rubric")
    assert [(a.case, a.order) for a in asks] == [("r1", "ab"), ("r1", "ba")]
    assert all("<think>" not in a.prompt and "Lyon?" not in a.prompt for a in asks)
    assert "[Answer A]\nParis\n\n[Answer B]\nLyon" in asks[0].prompt
    assert "[Answer A]\nLyon\n\n[Answer B]\nParis" in asks[1].prompt


def _shown(messages: Any, which: str) -> str:
    text = messages[-1]["content"]
    after = text.split(f"[Answer {which}]\n", 1)[1]
    return after.split("\n\n", 1)[0]


def test_case_ids_with_colons_get_their_own_verdicts(tmp_path: Path, tiny_base: Path) -> None:
    # the judge prefers whichever answer says "good"; which column that is differs per case
    answers = {"q:1": ("good one", "bad one"), "q:2": ("bad two", "good two"), "ns:x:3": ("good three", "bad three")}
    rows = [r for case, (lora, base) in answers.items()
            for r in (("open", case, "lora", lora, True), ("open", case, "base", base, False))]
    path = write(tmp_path / "r.json", COLUMNS, rows)

    def judge(adapter: Any, messages: Any) -> str:
        return "Verdict: A" if "good" in _shown(messages, "A") else "Verdict: B"

    register()
    FakeEngine.reset(judge)
    opts = ProbeOptions(engine="fake", cache_dir=tmp_path / "cache", device="cpu")
    run = run_judge(JudgeRequest(path, tiny_base, "lora:base", ["open"], options=opts))
    verdicts = {v.case: (v.verdict, v.reason) for v in run.judgements[0].verdicts}
    assert verdicts == {"q:1": ("a", "agree"), "q:2": ("b", "agree"), "ns:x:3": ("a", "agree")}
    written = load_results(path).judgements_for("open")[0]
    assert {v.case: v.parsed for v in written.verdicts} == {"q:1": ["a", "a"], "q:2": ["b", "b"],
                                                            "ns:x:3": ["a", "a"]}


def _judged_file(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A results file with a judgement written by hand, and the label each case's verdict cell must start with."""
    answers = {"w-a": ("LORA WINS", "base loses"), "w-b": ("lora loses", "BASE WINS"),
               "w-tie": ("same-ish one", "same-ish two"), "w-same": ("identical", "identical")}
    rows = [r for case, (lora, base) in answers.items()
            for r in (("open", case, "lora", lora, True), ("open", case, "base", base, False))]
    verdicts = [{"case": "w-a", "verdict": "a", "reason": "agree", "answers": ["Verdict: A", "Verdict: B"],
                 "parsed": ["a", "a"]},
                {"case": "w-b", "verdict": "b", "reason": "agree", "answers": ["Verdict: B", "Verdict: A"],
                 "parsed": ["b", "b"]},
                {"case": "w-tie", "verdict": "tie", "reason": "inconsistent", "answers": ["Verdict: A", "Verdict: A"],
                 "parsed": ["a", "b"]},
                {"case": "w-same", "verdict": "tie", "reason": "identical", "answers": [], "parsed": []}]
    judgements = {"version": 1, "runs": [{"judge": "hand-judge", "judge_model": {}, "a": "lora", "b": "base",
                                          "battery": "open", "rubric": "r", "created": "2026-01-01T00:00:00+00:00",
                                          "verdicts": verdicts}]}
    path = write(tmp_path / "judged.json", COLUMNS, rows, judgements=judgements)
    return path, {"w-a": "lora", "w-b": "base", "w-tie": "tie", "w-same": "tie"}


def test_html_verdicts_name_the_winning_column(tmp_path: Path) -> None:
    path, winners = _judged_file(tmp_path)
    out = tmp_path / "r.html"
    build_report([path], output=out)
    doc = parse(out.read_text(encoding="utf-8"))
    head = " ".join(doc.texts["judge-head"])
    assert "Judged by hand-judge" in head and "lora 1 · tie 2 · base 1" in head
    assert "lora preferred in 1/2 decided" in head
    table = next(t for t in doc.tables if "judged" in t.classes)
    assert table.rows[0].texts[2:5] == ["lora", "base", "verdict"]
    shown = {row.texts[0]: row.texts for row in table.rows[1:]}
    assert set(shown) == set(winners)
    for case, winner in winners.items():
        verdict = shown[case][4]
        assert verdict.startswith(winner), (case, verdict)  # the labels: no one is a prefix of another
    assert shown["w-a"][2].strip() == "LORA WINS" and shown["w-b"][3].strip() == "BASE WINS"


def test_markdown_verdicts_name_the_winning_column(tmp_path: Path) -> None:
    path, winners = _judged_file(tmp_path)
    md_path = tmp_path / "r.md"
    build_report([path], markdown=md_path)
    md = md_path.read_text(encoding="utf-8")
    assert "**lora 1 · tie 2 · base 1**" in md
    _, body = next((h, b) for h, b in md_tables(md) if h.startswith("| case | prompt | lora | base | verdict"))
    shown = {md_cells(line)[0]: md_cells(line)[4] for line in body}
    assert set(shown) == set(winners)
    for case, winner in winners.items():
        assert shown[case].startswith(f"**{winner}**"), (case, shown[case])
    assert json.loads(path.read_text())["judgements"]["runs"][0]["verdicts"][0]["verdict"] == "a"
