"""Reasoning, weights, tool calls and stop ids on rows written by hand, each with its expected value stated here:
the reasoning of a ``weight: 0`` turn is context like the rest of the turn; an empty reasoning block the assistant
wrote itself is not one the template injected; a call needs a name AND arguments to be a call written as text, while
a probe's call to a tool without parameters may leave its arguments out; a generation config's eos ids join the
tokenizer's eos as stop ids, they do not replace it. The tiny base's plain ChatML template and tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evalsuite.chat.encode import EncodeOptions, encode_sample
from evalsuite.chat.tokenizer import load_tokenizer
from evalsuite.config.rows import Sample
from evalsuite.lint.setup import from_options
from evalsuite.lint.turns import TurnChecks, check_turns
from evalsuite.probe.toolcalls import call_problems

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-base"


def _trained(messages: tuple[dict[str, Any], ...], **opts: Any) -> tuple[str, set[str]]:
    tk = load_tokenizer(TINY)
    e = encode_sample(Sample("rows", 1, messages=messages), tk, tk.chat_template, EncodeOptions(**opts))
    ids = [i for i, lab in zip(e.input_ids, e.labels) if lab != -100]
    return tk.decode(ids), {r for r, lab in zip(e.roles, e.labels) if lab != -100}


def _thought(reasoning: str, answer: str) -> str:
    return f"<think>\n{reasoning}\n</think>\n\n{answer}"


def test_the_reasoning_of_a_weight_zero_turn_is_not_trained() -> None:
    msgs = ({"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": _thought("WRONG THOUGHT", "5"), "weight": 0},
            {"role": "user", "content": "Again?"},
            {"role": "assistant", "content": _thought("RIGHT THOUGHT", "4")})
    text, roles = _trained(msgs)
    assert text == _thought("RIGHT THOUGHT", "4") + "<|im_end|>" and roles == {"reasoning", "assistant"}
    text, roles = _trained(msgs, train_on_reasoning=False)
    assert text == "4<|im_end|>" and roles == {"assistant"}


# -- the lint's per-row turn checks ------------------------------------------------------------------------------------

def _checked(content: str, rendered_answer: str, tools: Any = None) -> tuple[list[str], TurnChecks]:
    """check_turns on one user/assistant row whose assistant segment rendered as ``rendered_answer``."""
    user = "<|im_start|>user\nq<|im_end|>\n"
    text = f"{user}<|im_start|>assistant\n{rendered_answer}<|im_end|>\n"
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": content}]
    acc = TurnChecks()
    found = check_turns(acc, msgs, tools, text, [0, len(user), len(text)], ["user", "assistant"], [False, True])
    return found, acc


EMPTY = "<think>\n\n</think>\n\n"


def test_an_empty_block_the_assistant_wrote_is_not_injected() -> None:
    found, acc = _checked(f"{EMPTY}Hi", f"{EMPTY}Hi")  # written in the data, rendered as written
    assert found == [] and acc.empty_blocks == 0
    found, acc = _checked("Hi", f"{EMPTY}Hi")  # the template put it there
    assert found == ["empty-reasoning"] and acc.empty_blocks == 1
    found, acc = _checked(f"{EMPTY}Hi", f"{EMPTY}{EMPTY}Hi")  # one written, one more injected
    assert found == ["empty-reasoning"] and acc.empty_blocks == 1


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]


@pytest.mark.parametrize(("content", "as_text"), [
    ('{"name": "get_weather", "arguments": {"city": "Oslo"}}', True),
    ('[{"name": "get_time", "arguments": {}}]', True),
    ('{"name": "get_weather"}', False),  # names a tool, but is no call: no arguments
    ('{"name": "get_weather", "city": "Oslo"}', False),
    ('{"name": "not_declared", "arguments": {}}', False),
    ("The weather in Oslo is mild.", False),
])
def test_a_call_written_as_text_needs_a_name_and_arguments(content: str, as_text: bool) -> None:
    found, acc = _checked(content, content, TOOLS)
    assert (found == ["tool-call-as-text"], acc.calls_as_text) == (as_text, int(as_text))


@pytest.mark.parametrize(("text", "problems"), [
    ('<tool_call>{"name": "get_time"}</tool_call>', []),  # no parameters declared: no arguments needed
    ('{"name": "get_time", "arguments": {}}', []),
    ('{"name": "get_time", "arguments": null}', []),
    ('{"name": "get_weather"}', ["missing-arguments"]),  # the other side: a required argument left out
    ('{"name": "get_weather", "arguments": "Oslo"}', ["bad-arguments"]),
])
def test_a_call_to_a_tool_without_parameters_may_leave_out_its_arguments(text: str, problems: list[str]) -> None:
    assert [reason for reason, _ in call_problems(text, TOOLS)] == problems


# -- stop ids ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("eos_token_id", "expected"), [(7, {2, 7}), ([0, 7], {0, 2, 7}), ([2], {2}), (None, {2})])
def test_generation_config_eos_joins_the_tokenizer_s(tmp_path: Path, eos_token_id: Any, expected: set[int]) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "HI"}]}) + "\n")
    gen = tmp_path / "generation_config.json"
    gen.write_text(json.dumps({"eos_token_id": eos_token_id}))
    assert load_tokenizer(TINY).token_id("<|im_end|>") == 2  # the tokenizer's eos_token
    setup = from_options(str(TINY), [str(rows)], generation_config=str(gen))
    assert setup.stop_ids == expected
