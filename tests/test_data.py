"""Dataset rows -> samples: every supported shape, and every malformed row named by file and row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite.config.datasets import CustomFormat, DatasetSpec
from evalsuite.config.rows import load_samples, read_records
from evalsuite.errors import EvalsuiteError


def write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_chat_sharegpt_alpaca_custom_and_completion(tmp_path: Path) -> None:
    chat = write(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                         {"role": "assistant", "content": "HI"}]}])
    [s] = load_samples(DatasetSpec(str(chat), "chat_template"))
    assert s.messages == ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "HI"})
    assert s.where == f"{chat}:1"
    share = write(tmp_path / "share.jsonl", [{"conversations": [{"from": "system", "value": "be brief"},
                                                                {"from": "human", "value": "hi"},
                                                                {"from": "gpt", "value": "HI"}]}])
    [s] = load_samples(DatasetSpec(str(share), "sharegpt", drop_system_message=True))
    assert [m["role"] for m in s.messages or ()] == ["user", "assistant"]
    alpaca = write(tmp_path / "a.jsonl", [{"instruction": "Add", "input": "1 1", "output": "2"}])
    [s] = load_samples(DatasetSpec(str(alpaca), "alpaca", system_prompt="Be exact."))
    assert s.messages == ({"role": "system", "content": "Be exact."}, {"role": "user", "content": "Add\n\n1 1"},
                          {"role": "assistant", "content": "2"})
    squad = write(tmp_path / "q.jsonl", [{"question": "Who?", "context": "Ann did.",
                                         "answers": {"text": ["Ann"], "answer_start": [0]}}])
    fmt = CustomFormat(format="<|user|>\n{instruction} {input}<|end|>\n<|assistant|>\n", field_instruction="question",
                       field_input="context", field_output="answers")
    [s] = load_samples(DatasetSpec(str(squad), "custom", custom=fmt))
    assert (s.prompt, s.completion) == ("<|user|>\nWho? Ann did.<|end|>\n<|assistant|>\n", "Ann")
    text = write(tmp_path / "t.jsonl", [{"text": "plain"}])
    [s] = load_samples(DatasetSpec(str(text), "completion"))
    assert (s.prompt, s.completion, s.is_chat) == ("", "plain", False)


def test_json_array_rows_are_numbered_from_one(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text(json.dumps([{"text": "a"}, {"text": "b"}]), encoding="utf-8")
    assert [row for row, _ in read_records(p)] == [1, 2]


def test_jsonl_rows_are_numbered_by_line_and_blank_lines_skipped(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_text('{"text": "a"}\n\n{"text": "b"}\n', encoding="utf-8")
    assert [row for row, _ in read_records(p)] == [1, 3]


@pytest.mark.parametrize("raw,needle", [
    (b'{"text": "a"}\n{"text": \n', "a.jsonl:2: invalid JSON"),
    (b'{"text": "a"}\n{"text": "caf\xe9"}\n', "a.jsonl:2: not UTF-8 text (byte 0xe9"),
    (b'{"text": 5}\n', "a.jsonl:1: text: expected a string, got 5"),
    (b'{"other": "x"}\n', "a.jsonl:1: text: expected a string, missing"),
    (b'"just a string"\n', "a.jsonl:1: expected a JSON object, got str"),
])
def test_bad_rows_name_file_and_row(tmp_path: Path, raw: bytes, needle: str) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(raw)
    with pytest.raises(EvalsuiteError) as e:
        load_samples(DatasetSpec(str(p), "completion"))
    assert needle in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EvalsuiteError, match="no such file"):
        load_samples(DatasetSpec(str(tmp_path / "nope.jsonl"), "completion"))


def test_modern_message_fields_are_kept(tmp_path: Path) -> None:
    """tool_calls, tool_call_id, name, reasoning fields, text parts and the row's tools reach the sample as
    apply_chat_template expects them; keys evalsuite does not know are passed on too (templates read their own)."""
    call = {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    row = {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call12345", "name": "get_weather"},
        {"role": "assistant", "content": "21 degrees.", "reasoning_content": "The tool said 21.",
         "metadata": "kept"}], "tools": tools}
    [s] = load_samples(DatasetSpec(str(write(tmp_path / "m.jsonl", [row])), "chat_template"))
    assert s.tools == tuple(tools)
    msgs = s.messages or ()
    assert msgs[0]["content"] == [{"type": "text", "text": "Be brief."}]
    assert msgs[2] == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert msgs[3] == {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call12345", "name": "get_weather"}
    assert msgs[4] == {"role": "assistant", "content": "21 degrees.", "reasoning_content": "The tool said 21.",
                       "metadata": "kept"}


def test_openai_fine_tuning_jsonl(tmp_path: Path) -> None:
    """OpenAI's chat fine-tuning format: JSON-string arguments kept as written, per-message weight, and the legacy
    `functions` / `function_call` read as tools / tool_calls."""
    row = {"messages": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "5", "weight": 0},
        {"role": "user", "content": "Use the tool."},
        {"role": "assistant", "function_call": {"name": "add", "arguments": "{\"a\": 2, \"b\": 2}"}},
        {"role": "tool", "content": "4", "tool_call_id": "x"},
        {"role": "assistant", "content": "4", "weight": 1}],
        "functions": [{"name": "add", "parameters": {"type": "object"}}]}
    [s] = load_samples(DatasetSpec(str(write(tmp_path / "o.jsonl", [row])), "chat_template"))
    msgs = s.messages or ()
    assert msgs[1]["weight"] == 0 and msgs[5]["weight"] == 1
    assert msgs[3]["content"] is None
    assert msgs[3]["tool_calls"] == [{"type": "function", "function": {"name": "add",
                                                                       "arguments": "{\"a\": 2, \"b\": 2}"}}]
    assert s.tools == ({"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}},)


def test_sharegpt_function_call_and_observation_from_the_real_glaive_file() -> None:
    from lint_support import fixture

    path = fixture("datasets/sharegpt/llamafactory__glaive_toolcall_en_demo.json")
    samples = load_samples(DatasetSpec(str(path), "sharegpt"))
    assert len(samples) == 300
    first = samples[0]
    assert [m["role"] for m in first.messages or ()] == ["user", "assistant", "user", "assistant", "tool",
                                                         "assistant", "user", "assistant"]
    call = (first.messages or ())[3]
    assert call == {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
        "name": "search_recipes", "arguments": {"ingredients": ["chicken", "bell peppers", "rice"]}}}]}
    result = (first.messages or ())[4]
    assert result["name"] == "search_recipes" and result["content"].startswith('{"recipes": [')
    # the row's tools were a JSON string of bare function schemas: parsed and wrapped as transformers' tools are
    assert first.tools is not None and first.tools[0]["type"] == "function"
    assert first.tools[0]["function"]["name"] == "search_recipes"
    calls = sum(1 for s in samples for m in s.messages or () if m.get("tool_calls"))
    results = sum(1 for s in samples for m in s.messages or () if m["role"] == "tool")
    assert calls == results == 211  # every function_call / observation turn of the file


@pytest.mark.parametrize("turn,needle", [
    ({"from": "function_call", "value": "not json"}, "conversations[1].value: a function_call value must be JSON"),
    ({"from": "function_call", "value": '{"arguments": {}}'}, "conversations[1].value.name: expected a string"),
    ({"from": "gpt", "value": "x", "tool_calls": "nope"}, "conversations[1].tool_calls: expected a non-empty list"),
    ({"from": "gpt", "value": "x", "thinking": ["a"]}, "conversations[1].thinking: expected a string"),
])
def test_bad_tool_and_reasoning_fields_name_row_and_field(tmp_path: Path, turn: dict[str, object],
                                                           needle: str) -> None:
    p = write(tmp_path / "s.jsonl", [{"conversations": [{"from": "human", "value": "hi"}, turn]}])
    with pytest.raises(EvalsuiteError) as e:
        load_samples(DatasetSpec(str(p), "sharegpt"))
    assert f"s.jsonl:1: {needle}" in str(e.value)
