"""The judge without a model: prompt rendering, parsing, the two orders, the results section and its summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_support import load_factory

from evalsuite.errors import EvalsuiteError
from evalsuite.judge.pairs import Ask, asks_for, judgement, merge, pair_cases, parse_pair
from evalsuite.judge.prompt import DEFAULT_RUBRIC, combine, in_pair_terms, judge_prompt, parse_verdict
from evalsuite.results.io import load_results, write_results
from evalsuite.results.judgements import summarise
from evalsuite.results.stats import binomial_two_sided_p, wilson_interval

factory = load_factory()


@pytest.mark.parametrize(("reply", "side"), [
    ("Verdict: A", "a"), ("verdict: b", "b"), ("Verdict: tie", "tie"), ("VERDICT - TIE.", "tie"),
    ("A is clearer and correct.\nVerdict: B", "b"),  # the verdict line decides, not a letter in the reasoning
    ("My verdict is **A**.", "a"), ("[[B]]", "b"), ("[[C]]", "tie"), ("B", "b"), ("(A).", "a"), ("Answer B", "b"),
    ("Verdict: A\nVerdict: B", None),  # two different verdicts
    ("I cannot decide between them.", None), ("", None), ("AB", None), ("Verdict: maybe", None),
])
def test_parse_verdict(reply: str, side: str | None) -> None:
    assert parse_verdict(reply) == side


def test_the_two_orders_make_one_verdict() -> None:
    # a judge that always prefers column a: "A" when a is shown first, "B" when b is
    says_a = [in_pair_terms("a", "ab"), in_pair_terms("b", "ba")]
    assert says_a == ["a", "a"] and combine(says_a) == ("a", "agree")
    # a position-biased judge: always "A", whichever column is shown first
    biased = [in_pair_terms("a", "ab"), in_pair_terms("a", "ba")]
    assert combine(biased) == ("tie", "inconsistent")
    assert combine([in_pair_terms("tie", "ab"), in_pair_terms("tie", "ba")]) == ("tie", "agree")
    assert combine(["a", None]) == ("tie", "unparseable")


def test_prompt_shows_rubric_conversation_answers_and_the_format() -> None:
    text = judge_prompt((("user", "hi"), ("assistant", "HI"), ("user", "why?")), "first", "", "Be strict.")
    assert "Be strict." in text and "user: hi\nassistant: HI\nuser: why?" in text
    assert text.index("[Answer A]\nfirst") < text.index("[Answer B]\n(empty)") < text.index('"Verdict: A"')
    assert "Do not let the order" in judge_prompt((("user", "q"),), "x", "y")  # the default rubric


@pytest.fixture()
def results() -> object:
    return factory.make_results([("base", "base", 0.2), ("lora", "adapter", 0.9)], 0)


def test_pairs_asks_and_verdicts(results: object) -> None:
    cases = pair_cases(results, "lora", "base", ["llama32-ten"])["llama32-ten"]  # type: ignore[arg-type]
    assert len(cases) == 10 and cases[3].turns == (("user", "How does photosynthesis work?"),)
    asks = asks_for(cases, DEFAULT_RUBRIC)
    identical = [c for c in cases if c.identical]
    assert len(asks) == 2 * (len(cases) - len(identical))
    first = next(a for a in asks if a.order == "ab")
    case = next(c for c in cases if c.case == first.case)
    assert first.prompt.index(case.a) < first.prompt.index(case.b)
    swapped = next(a for a in asks if a.case == first.case and a.order == "ba")
    assert swapped.prompt.index(case.b) < swapped.prompt.index(case.a)

    replies = {}
    for i, ask in enumerate(asks):  # one case garbage, one biased, the rest for column a
        replies[(ask.case, ask.order)] = _reply(i // 2, ask)
    j = judgement(cases, replies, "judge", "lora", "base", DEFAULT_RUBRIC, {"path": "judge-dir"})
    by_case = {v.case: v for v in j.verdicts}
    asked = [c.case for c in cases if not c.identical]
    assert by_case[asked[0]].reason == "unparseable" and by_case[asked[0]].parsed == [None, None]
    assert by_case[asked[1]].reason == "inconsistent" and by_case[asked[1]].verdict == "tie"
    assert all(by_case[c].verdict == "a" for c in asked[2:])
    s = summarise(j)
    assert (s.n, s.a_wins, s.b_wins, s.inconsistent, s.unparseable) == (10, len(asked) - 2, 0, 1, 2)
    assert s.ties == 2 + len(identical) and s.identical == len(identical)
    assert (s.share_low, s.share_high) == wilson_interval(s.a_wins, s.decided)
    assert s.p == binomial_two_sided_p(s.a_wins, s.decided)


def _reply(k: int, ask: Ask) -> str:
    if k == 0:
        return "Both are fine, I think."
    if k == 1:
        return "Verdict: A"
    return "Verdict: A" if ask.order == "ab" else "Verdict: B"


def test_pair_and_battery_errors_name_what_exists(results: object) -> None:
    assert parse_pair("lora:base", ["base", "lora"]) == ("lora", "base")
    for bad, message in [("lora", "expected COLUMN_A:COLUMN_B"), ("lora:nope", "no column 'nope'"),
                         ("lora:lora", "against itself")]:
        with pytest.raises(EvalsuiteError, match=message):
            parse_pair(bad, ["base", "lora"])
    with pytest.raises(EvalsuiteError, match="no battery 'nope' in the results"):
        pair_cases(results, "lora", "base", ["nope"])  # type: ignore[arg-type]


def test_judgements_round_trip_and_old_files_load(results: object, tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    write_results(results, old)  # type: ignore[arg-type]
    assert "judgements" not in json.loads(old.read_text()) and load_results(old).judgements == []
    cases = pair_cases(results, "lora", "base")["llama32-ten"]  # type: ignore[arg-type]
    replies = {(a.case, a.order): "Verdict: tie" for a in asks_for(cases, "r")}
    merge(results, [judgement(cases, replies, "j", "lora", "base", "r")])  # type: ignore[arg-type]
    merge(results, [judgement(cases, replies, "j", "lora", "base", "r")])  # type: ignore[arg-type]  # replaces
    write_results(results, tmp_path / "new.json")  # type: ignore[arg-type]
    back = load_results(tmp_path / "new.json")
    assert back.judgements == results.judgements and len(back.judgements) == 1  # type: ignore[attr-defined]
    assert back.judgements_for("llama32-ten")[0].verdicts[0].parsed == ["tie", "tie"]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda j: j.update(version=2), "judgements.version: expected 1, got 2 (written by a newer evalsuite?)"),
    (lambda j: j["runs"][0].update(a="ghost"), "judgements.runs[0].a: 'ghost' is not in adapters"),
    (lambda j: j["runs"][0]["verdicts"][0].update(verdict="c"), "judgements.runs[0].verdicts[0].verdict"),
    (lambda j: j["runs"][0]["verdicts"][0].update(parsed=["x", "a"]), "verdicts[0].parsed[0]: expected one of"),
    (lambda j: j["runs"][0]["verdicts"][0].update(answers=["only one"]), "verdicts[0]: answers and parsed"),
    (lambda j: j["runs"].append(j["runs"][0]), "judgements.runs[1]: duplicate (judge, a, b, battery)"),
])
def test_bad_judgements_are_located_errors(results: object, tmp_path: Path, edit: object, message: str) -> None:
    cases = pair_cases(results, "lora", "base")["llama32-ten"]  # type: ignore[arg-type]
    replies = {(a.case, a.order): "Verdict: B" for a in asks_for(cases, "r")}
    merge(results, [judgement(cases, replies, "j", "lora", "base", "r")])  # type: ignore[arg-type]
    path = tmp_path / "r.json"
    write_results(results, path)  # type: ignore[arg-type]
    data = json.loads(path.read_text())
    data["judgements"]["runs"][0]["verdicts"].sort(key=lambda v: v["reason"] == "identical")
    edit(data["judgements"])  # type: ignore[operator]
    path.write_text(json.dumps(data))
    with pytest.raises(EvalsuiteError) as e:
        load_results(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)
