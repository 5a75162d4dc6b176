"""The tool-call battery (issue 11): calls in each family's wrapper parse, and each way of getting one wrong is
named; the battery's tools reach the chat template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evalsuite.errors import EvalsuiteError
from evalsuite.probe.batteries import load_battery, resolve_batteries
from evalsuite.probe.scorers import Output
from evalsuite.probe.toolcalls import call_problems, calls_in, json_values, tool_names

BATTERY = load_battery(resolve_batteries(["tool-calls"])[0])
TOOLS = BATTERY.cases[0].tools
WEATHER = {"name": "get_weather", "arguments": {"city": "Paris"}}


def test_declared_tools_and_their_required_arguments() -> None:
    assert tool_names(TOOLS) == {"get_weather": ["city"], "search_web": ["query"],
                                 "convert_currency": ["amount", "from_currency", "to_currency"]}
    assert tool_names([{"name": "bare", "parameters": {"required": ["x"]}}]) == {"bare": ["x"]}


@pytest.mark.parametrize("text", [
    f"<tool_call>\n{json.dumps(WEATHER)}\n</tool_call>",  # Hermes / Qwen
    f"[TOOL_CALLS][{json.dumps(WEATHER)}]",  # Mistral: a list of calls
    '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}',  # Llama 3.1
    '{"function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}',  # OpenAI, arguments a string
    f"Sure, let me check.\n```json\n{json.dumps(WEATHER, indent=2)}\n```",  # a fine-tune's fence
    f"<|tool_call|>[{json.dumps(WEATHER)}, {json.dumps({'name': 'search_web', 'arguments': {'query': 'x'}})}]",
])
def test_calls_in_every_wrapper_parse(text: str) -> None:
    assert call_problems(text, TOOLS, "get_weather") == []
    assert BATTERY.scorer(BATTERY.cases[0], Output(text, "eos", text)).passed


@pytest.mark.parametrize(("text", "reason"), [
    ('<tool_call>{"name": "get_weather", "arguments": {"city": "Par', "bad-json"),  # cut at the budget
    ("{name: get_weather}", "bad-json"),
    ("It is sunny in Paris, probably.", "no-call"),
    ('{"city": "Paris"}', "no-call"),  # arguments without a name
    ('{"name": "get_wether", "arguments": {"city": "Paris"}}', "unknown-tool"),
    ('{"name": "get_weather", "arguments": {"unit": "celsius"}}', "missing-arguments"),
    ('{"name": "get_weather", "arguments": ["Paris"]}', "bad-arguments"),
    ('{"name": "get_weather", "arguments": "city=Paris"}', "bad-arguments"),
    ('{"name": "search_web", "arguments": {"query": "weather Paris"}}', "wrong-tool"),
])
def test_each_wrong_call_names_its_reason(text: str, reason: str) -> None:
    s = BATTERY.scorer(BATTERY.cases[0], Output(text, "eos", text))
    assert not s.passed and reason in s.details["reasons"], s.details
    assert s.details["problems"]


def test_json_values_skip_prose_and_keep_lists() -> None:
    values, error = json_values('a {"name": "x"} b [1, {"name": "y"}] c')
    assert values == [{"name": "x"}, [1, {"name": "y"}]] and error is None
    assert [c.name for c in calls_in(values)] == ["x", "y"]
    assert json_values("no json here") == ([], None)


def test_battery_tools_are_validated(tmp_path: Path) -> None:
    bad = tmp_path / "b.yaml"
    bad.write_text("scorer: tool_call\ntools:\n  - {type: function, function: {description: no name}}\ncases: [hi]\n")
    with pytest.raises(EvalsuiteError, match=r"b.yaml:3: tools\[0\]: expected \{type: function"):
        load_battery(bad)


def test_tool_calls_is_opt_in_and_every_case_carries_the_tools() -> None:
    assert "tool-calls" not in [p.stem for p in resolve_batteries([])]
    assert all(c.tools == TOOLS for c in BATTERY.cases) and len(TOOLS) == 3
    assert {c.expected["name"] for c in BATTERY.cases} == set(tool_names(TOOLS))


def _no_case_attr(expected: Any) -> Any:
    class C:
        id, prompt = "c", "weather?"

    c = C()
    c.expected = expected  # type: ignore[attr-defined]
    return c


def test_a_case_without_tools_declares_none() -> None:
    s = BATTERY.scorer(_no_case_attr(None), Output(json.dumps(WEATHER), "eos", ""))
    assert not s.passed and s.details["reasons"] == ["unknown-tool"]


def test_the_battery_tools_reach_the_template_and_the_engine(shared_fixtures: Path, tiny_base: Path,
                                                             tmp_path: Path) -> None:
    from fake_engine import FakeEngine, register

    from evalsuite.chat.tokenizer import load_tokenizer
    from evalsuite.judge.target import model_target
    from evalsuite.probe.generation import PromptCodec
    from evalsuite.probe.runner import ProbeOptions, ProbePlan, execute

    qwen = (shared_fixtures / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text(encoding="utf-8")
    codec = PromptCodec.build(load_tokenizer(tiny_base), qwen, [])
    case = BATTERY.cases[0]
    with_tools, without = codec.prompt_text(case.messages, case.tools), codec.prompt_text(case.messages)
    assert '"name": "get_weather"' in with_tools and "<tools>" in with_tools
    assert "get_weather" not in without and with_tools.endswith("<|im_start|>assistant\n")

    register()
    FakeEngine.reset(lambda *_: json.dumps(WEATHER))
    opts = ProbeOptions(engine="fake", cache_dir=tmp_path / "cache", device="cpu")
    run = execute(ProbePlan(opts, [model_target(tiny_base)], [BATTERY], {}))
    asked = [r for engine in FakeEngine.built for call in engine.calls for _, r in call]
    assert len(asked) == len(BATTERY.cases) and all(r.tools == TOOLS for r in asked)
    passed = {s.case: s.passed for s in run.results.samples}
    assert passed == {c.id: c.expected["name"] == "get_weather" for c in BATTERY.cases}
