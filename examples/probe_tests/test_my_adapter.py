"""Your own probe tests, beside the batteries: each test runs once per adapter (and on the base with --probe-base).

    pytest examples/probe_tests -m probes --adapter runs/demo [--adapter runs/other] [--probe-out results.json]

`probe_model` is one column: `.chat(prompt)` returns the reply the batteries would get for it (rendered with the
adapter's training template, greedy, stopped on its stop ids, cached), `.generate([...])` batches many prompts. The
asserts reuse the batteries' scorers and fail with prompt, output, expected value and finish reason. Verdicts land in
the results file as the `user` battery, so gates (`--gate 'user.accuracy >= 0.9'`) and reports cover them too.
"""

from __future__ import annotations

import pytest

from evalsuite.probe.asserts import assert_contains, assert_no_leakage, assert_stops, assert_uppercase_of

pytestmark = pytest.mark.probes


@pytest.fixture(autouse=True)
def adapters_only(probe_model):
    """The demo adapter's skill is uppercasing; the plain base (a control column) echoes, so skip it here."""
    if probe_model.kind == "base":
        pytest.skip("the base model is not trained to uppercase")


def test_greets_in_caps_and_stops(probe_model):
    reply = probe_model.chat("hello", max_new_tokens=24)
    assert_uppercase_of(reply)  # output == "HELLO"
    assert_stops(reply)  # finish reason eos, no loop, no role header


@pytest.mark.parametrize("text", ["abc def", "hellow world"])
def test_uppercases_what_it_is_given(probe_model, text):
    assert_uppercase_of(probe_model.chat(text, max_new_tokens=24))


def test_many_prompts_in_one_batch(probe_model):
    replies = probe_model.generate(["good morning", "see you soon", "one two three"], max_new_tokens=32)
    for reply in replies:
        assert_contains(reply, reply.prompt.split()[0].upper(), case_sensitive=True)
        assert reply.finish_reason == "eos", reply.text


def test_no_template_leakage_in_a_multi_turn_chat(probe_model):
    reply = probe_model.chat([{"role": "user", "content": "hi"},
                              {"role": "assistant", "content": "HI"},
                              {"role": "user", "content": "thanks"}])
    assert_no_leakage(reply)  # no special tokens, role headers or template fragments, no new turn
    assert reply.raw.strip() == reply.text.strip()  # raw keeps special tokens: there are none
