"""Scorers and text checks on hand-written outputs (no model): each verdict can pass and can fail, on the seeds'
real failure shapes."""

from __future__ import annotations

from typing import Any

import pytest

from evalsuite.errors import EvalsuiteError
from evalsuite.probe.scorers import Output, Score, known_scorers, make_scorer, register_scorer
from evalsuite.probe.textchecks import classify_cyrillic, leakage_findings, repeated_loop, transliterate


class Case:
    def __init__(self, prompt: str, expected: Any = None, id: str = "c") -> None:
        self.id, self.prompt, self.expected = id, prompt, expected


def run(name: str, prompt: str, text: str, finish: str = "eos", expected: Any = None, raw: str | None = None,
        **args: Any) -> Score:
    return make_scorer(name, args)(Case(prompt, expected), Output(text, finish, raw if raw is not None else text))


def test_exact_match_passes_on_upper_and_gives_partial_credit() -> None:
    ok = run("exact_match", "hellow world", "HELLOW WORLD", expected="HELLOW WORLD")
    assert ok.passed and ok.score == 1.0
    bad = run("exact_match", "hellow world", "HELLOW WORL", expected="HELLOW WORLD")
    assert not bad.passed and bad.score == pytest.approx(11 / 12)
    assert not run("exact_match", "hi", "HI ", expected="HI").passed
    assert run("exact_match", "hi", "HI ", expected="HI", strip=True).passed


@pytest.mark.parametrize(("prompt", "output", "verdict"), [
    ("привет", "ПРИВЕТ", "correct"),
    ("привет", "PRIVET", "transliterated"),  # the seed's answers
    ("привет", "PRIVETTE", "transliterated"),
    ("Привет!! Как Делаааааа", "PRIVET!! KAK DELAAAAAA", "transliterated"),
    ("привет", "привет", "unchanged"),
    ("привет", "HELLO", "wrong-script"),
    ("привет", "Привет", "other"),
    ("hello привет", "HELLO PRIVET", "transliterated"),
    ("hello привет", "HELLO ПРИВЕТ", "correct"),
])
def test_cyrillic_failures_are_classified(prompt: str, output: str, verdict: str) -> None:
    assert classify_cyrillic(prompt, output, prompt.upper()) == verdict
    s = run("cyrillic_case", prompt, output, expected=prompt.upper())
    assert s.passed == (verdict == "correct")
    assert s.details["failure"] == (None if verdict == "correct" else verdict)


def test_transliteration() -> None:
    assert transliterate("Щука и ёж") == "SHCHuka i yozh"


@pytest.mark.parametrize(("text", "finish", "raw", "passed"), [
    ("HELLO", "eos", None, True),
    ("HELLO", "new-turn", "HELLO", False),  # the seed's HELLO<|im_start|>assistant: stopped by a turn start
    ("HELLO HELLO HELLO HELLO HELLO HELLO", "max-tokens", None, False),
    ("HELLO\nHELLO\nHELLO", "eos", None, False),  # a repeated-line loop that happened to stop
    ("HELLO\nassistant\nHELLO", "eos", None, False),  # a role header inside the answer
    ("HELLO", "eos", "HELLO<|im_start|>assistant", False),  # a special token visible only in the raw decode
])
def test_stops(text: str, finish: str, raw: str | None, passed: bool) -> None:
    s = run("stops", "hello", text, finish, raw=raw)
    assert s.passed is passed, s.details
    assert bool(s.details["problems"]) is not passed


def test_loop_detection_leaves_short_runs_alone() -> None:
    assert repeated_loop("HOW ARE YOUUUUU") is None
    assert repeated_loop("a b a b") is None
    assert "repeated" in (repeated_loop("HELLO\uFFFDassistant\uFFFD" * 20) or "")


@pytest.mark.parametrize(("text", "raw", "finish", "finding"), [
    ("HELLO", "HELLO", "eos", None),
    ("HELLO", "HELLO<|endoftext|>", "eos", "raw output contains template marker"),  # hidden by skipping specials
    ("HELLO<start_of_turn>model", None, "eos", "output contains template marker"),  # spelled out as text
    ("model\nHELLO", None, "eos", "role name at a line start"),
    ("User: hi\nHELLO", None, "eos", "role name at a line start"),
    ("HEL\ufffdLO", None, "eos", "U+FFFD"),
    ("\nHELLO", None, "eos", "stray leading newline"),  # the seed's Gemma output
    ("HELLO\n", None, "eos", "stray trailing newline"),
    ("HELLO", None, "new-turn", "turn-start token"),
    ("Users can log in.\nModels are trained.", None, "eos", None),  # role-like words in prose are fine
])
def test_no_leakage(text: str, raw: str | None, finish: str, finding: str | None) -> None:
    s = run("no_leakage", "hello", text, finish, raw=raw)
    assert s.passed is (finding is None), s.details
    if finding:
        assert any(finding in p for p in s.details["problems"]), s.details


def test_leakage_markers_from_the_template_are_checked() -> None:
    assert leakage_findings("ok", "ok [[turn]]", ["[[turn]]"])
    assert not leakage_findings("ok", "ok", ["[[turn]]"])


def test_open_ended_checks_answers_stopping_and_leakage() -> None:
    fib = {"contains": ["13", "21"]}
    assert run("open_ended", "Continue", "13, 21, 34", expected=fib).passed
    missing = run("open_ended", "Continue", "13, 20", expected=fib)
    assert not missing.passed and "21" in missing.details["problems"][0]
    assert not run("open_ended", "Capital?", "Paris", "max-tokens", expected={"contains": ["Paris"]}).passed
    assert not run("open_ended", "Poem", "   ").passed
    assert run("open_ended", "Poem", "Roses are red.").passed
    assert run("open_ended", "France?", "It is paris.", expected={"contains": ["Paris"]}).passed


def test_unknown_scorer_lists_known_ones() -> None:
    with pytest.raises(EvalsuiteError) as e:
        make_scorer("exact_mtch")
    msg = str(e.value)
    assert "unknown scorer 'exact_mtch'" in msg
    for name in ("exact_match", "cyrillic_case", "stops", "no_leakage", "squad", "open_ended"):
        assert name in msg


def test_bad_scorer_arguments_are_one_error() -> None:
    with pytest.raises(EvalsuiteError, match="scorer 'exact_match': bad arguments"):
        make_scorer("exact_match", {"nope": 1}, where="b.yaml:3: scorer")
    with pytest.raises(EvalsuiteError, match="similar must be in"):
        make_scorer("cyrillic_case", {"similar": 2})


def test_custom_scorer_registers_by_name_and_duplicates_are_refused() -> None:
    def shouting(min_bangs: int = 1) -> Any:
        def score(case: Any, out: Output) -> Score:
            ok = out.text.count("!") >= min_bangs
            return Score(ok, float(ok))

        return score

    register_scorer("test-shouting", shouting)
    assert "test-shouting" in known_scorers()
    assert run("test-shouting", "x", "HI!!", min_bangs=2).passed
    assert not run("test-shouting", "x", "HI!", min_bangs=2).passed
    with pytest.raises(EvalsuiteError, match="already registered"):
        register_scorer("test-shouting", lambda **kw: shouting(**kw))
    with pytest.raises(EvalsuiteError, match="already registered"):
        register_scorer("exact_match", shouting)
