"""Dataset files read as a stream (``evalsuite.config.records``): the same records, rows and lines as parsing the
whole file, whatever the read block, and errors naming the file and line."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsuite.config.records import ArrayReader, iter_records
from evalsuite.errors import EvalsuiteError

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                max_size=3), max_leaves=8)


def _array_text(values: list[Any], indent: int | None, gap: str) -> tuple[str, list[int]]:
    """An array written element by element, and the line each element starts on."""
    text, lines = "[" + gap, []
    for k, v in enumerate(values):
        if k:
            text += "," + gap
        lines.append(text.count("\n") + 1)
        text += json.dumps(v, indent=indent, ensure_ascii=False)
    return text + gap + "]\n", lines


@settings(max_examples=150, deadline=None)
@given(values=st.lists(JSON, max_size=8), indent=st.sampled_from([None, 1, 2]),
       gap=st.sampled_from(["", " ", "\n", "\n  ", "\r\n", " \n\n "]), block=st.integers(1, 40))
def test_an_array_read_in_blocks_gives_every_element_and_its_line(values: list[Any], indent: int | None, gap: str,
                                                                  block: int) -> None:
    text, lines = _array_text(values, indent, gap)
    got = list(ArrayReader(io.StringIO(text.replace("\r\n", "\n")), block=block))
    assert [v for _r, _l, v in got] == json.loads(text)
    assert [r for r, _l, _v in got] == list(range(1, len(values) + 1))
    assert [line for _r, line, _v in got] == lines


def test_numbers_that_end_a_block_are_read_whole() -> None:
    assert [v for _r, _l, v in ArrayReader(io.StringIO("[12345, 678]"), block=3)] == [12345, 678]


@pytest.mark.parametrize("text", ['[\n {"a": 1},\n {"a": \n', '[\n {"a": 1}\n {"a": 2}\n]', '[\n {"a": 1}\n] x',
                                  '[\n  {"a": "x\n', '[{"a": 1},\n\n  {"a": tru}]'])
def test_broken_arrays_name_the_line_json_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """Read 4 characters at a time, the error is the one json.loads gives on the whole file: its line, message and
    column."""
    from evalsuite.config import records

    monkeypatch.setattr(records, "BLOCK", 4)
    p = tmp_path / "a.json"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(json.JSONDecodeError) as whole:
        json.loads(text)
    e = whole.value
    with pytest.raises(EvalsuiteError) as streamed:
        list(iter_records(p))
    assert str(streamed.value) == f"{p}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})"


def test_a_byte_that_is_not_utf8_far_into_the_file_is_found_with_its_line(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    good = b'{"text": "ok"}\n' * 20000
    p.write_bytes(good + b'{"text": "caf\xe9"}\n')
    where = rf"a.jsonl:20001: not UTF-8 text \(byte 0xe9 at offset {len(good) + 13}\)"
    with pytest.raises(EvalsuiteError, match=where):
        list(iter_records(p))


def test_jsonl_rows_keep_their_line_and_a_bom_is_skipped(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"t": 1}\n\n{"t": 2}\r\n')
    assert list(iter_records(p)) == [(1, 1, {"t": 1}), (3, 3, {"t": 2})]


def test_one_object_is_not_a_list_of_records(tmp_path: Path) -> None:
    p = tmp_path / "squad.json"
    p.write_text('{\n "data": [],\n "version": "1.1"\n}\n', encoding="utf-8")
    with pytest.raises(EvalsuiteError, match=r"squad.json:1: expected a JSON array of records or JSON Lines, got one "
                                             r"object with keys \['data', 'version'\]"):
        list(iter_records(p))
