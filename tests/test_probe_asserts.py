"""The assertion helpers of users' probe tests (evalsuite.probe.asserts), the user battery's case ids and samples
(evalsuite.probe.usertests) and conversations from prompts (evalsuite.probe.session): no model, no pytester."""

from __future__ import annotations

import pytest

from evalsuite.errors import EvalsuiteError
from evalsuite.probe.asserts import (
    ProbeAssertionError,
    assert_contains,
    assert_exact,
    assert_no_leakage,
    assert_scorer,
    assert_stops,
    assert_uppercase_of,
)
from evalsuite.probe.generation import Generation
from evalsuite.probe.session import Reply, conversation
from evalsuite.probe.usertests import case_id, user_sample

MARKERS = ("<|im_start|>", "<|im_end|>", "<|im_start|>assistant\n")


def reply(text: str, finish: str = "eos", raw: str | None = None, prompt: str = "hello") -> Reply:
    gen = Generation(text, finish, len(text) + 1, 0.01, text if raw is None else raw)
    return Reply("demo", ({"role": "user", "content": prompt},), gen, MARKERS, 24)


def test_passing_replies_pass_every_helper() -> None:
    good = reply("HELLO")
    assert assert_uppercase_of(good).passed
    assert assert_stops(good).passed and assert_no_leakage(good).passed
    assert assert_exact(reply(" HELLO\n"), "HELLO", strip=True).passed
    assert assert_contains(reply("well, HELLO there"), "hello", "there").passed
    assert assert_uppercase_of(reply("ABC"), prompt="abc").passed


def test_failure_message_is_the_battery_items_report() -> None:
    with pytest.raises(ProbeAssertionError) as caught:
        assert_uppercase_of(reply("hello", finish="max-tokens"))
    text = str(caught.value).splitlines()
    assert text == ["user / demo",
                    "  prompt:        'hello'",
                    "  output:        'hello'",
                    "  expected:      'HELLO'",
                    "  scorer:        exact_match",
                    "  finish reason: max-tokens (6 tokens)"]
    sample = caught.value.sample
    assert (sample.battery, sample.passed, sample.scorer.name, sample.expected) == ("user", False, "exact_match",
                                                                                   "HELLO")


def test_stops_and_leakage_failures_name_the_problem() -> None:
    with pytest.raises(ProbeAssertionError, match=r"finish reason: new-turn") as caught:
        assert_stops(reply("HELLO", finish="new-turn"))
    assert "started another role turn instead of stopping" in str(caught.value)
    with pytest.raises(ProbeAssertionError, match="problems:") as leak:
        assert_no_leakage(reply("HELLO<|im_end|>", raw="HELLO<|im_end|>"))
    assert "<|im_end|>" in str(leak.value)
    assert leak.value.sample.details["problems"] and leak.value.sample.scorer.name == "no_leakage"
    with pytest.raises(ProbeAssertionError, match=r"missing:.*'bye'"):
        assert_contains(reply("HELLO"), "hello", "bye")


def test_unknown_scorer_or_bad_arguments_are_one_clear_error() -> None:
    with pytest.raises(EvalsuiteError, match="unknown scorer 'nope'"):
        assert_scorer(reply("x"), "nope")
    with pytest.raises(EvalsuiteError, match=r"assert_scorer\('stops'\): scorer 'stops': bad arguments"):
        assert_scorer(reply("x"), "stops", colour="red")


@pytest.mark.parametrize(("nodeid", "column", "case"), [
    ("t.py::test_a[demo]", "demo", "t.py::test_a"),
    ("t.py::test_a[demo-hi]", "demo", "t.py::test_a[hi]"),
    ("t.py::test_a[hi-demo]", "demo", "t.py::test_a[hi]"),
    ("t.py::test_a[x-broken-terminator-y]", "broken-terminator", "t.py::test_a[x-y]"),
    ("t.py::Test::test_a[base]", "base", "t.py::Test::test_a"),
])
def test_case_id_drops_the_column_from_the_node_id(nodeid: str, column: str, case: str) -> None:
    assert case_id(nodeid, column) == case


def test_user_sample_keeps_the_assertion_or_the_tests_verdict() -> None:
    try:
        assert_uppercase_of(reply("hello"))
    except ProbeAssertionError as e:
        failed = user_sample("t.py::test_a[demo]", "demo", [reply("hello")], e)
    assert failed is not None and (failed.case, failed.scorer.name, failed.passed) == ("t.py::test_a", "exact_match",
                                                                                       False)
    passed = user_sample("t.py::test_a[demo]", "demo", [reply("x"), reply("HELLO")], None)
    assert passed is not None and (passed.output, passed.passed, passed.score, passed.scorer.name) == \
        ("HELLO", True, 1.0, "pytest")
    plain = user_sample("t.py::test_a[demo]", "demo", [reply("x")], AssertionError("assert 'x' == 'X'\nmore"))
    assert plain is not None and plain.details == {"error": "AssertionError: assert 'x' == 'X'"}
    assert user_sample("t.py::test_a[demo]", "demo", [], None) is None  # nothing chatted, nothing to record


def test_conversations_from_prompts() -> None:
    assert conversation("hi") == ({"role": "user", "content": "hi"},)
    assert conversation("hi", system="be brief")[0] == {"role": "system", "content": "be brief"}
    chat = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "A"}, {"role": "user", "content": "b"}]
    assert conversation(chat) == tuple(chat)
    with pytest.raises(EvalsuiteError, match="must end in a user turn"):
        conversation(chat[:2])
    with pytest.raises(EvalsuiteError, match=r"messages\[0\]: expected"):
        conversation([{"role": "user"}])
