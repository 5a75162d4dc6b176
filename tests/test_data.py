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
