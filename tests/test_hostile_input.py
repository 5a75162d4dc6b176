"""Issue 31, tracebacks and hangs from input shapes: JSON nested thousands deep (data rows, results files, tool-call
arguments in rows and in model output, GGUF metadata arrays), lone surrogates, a NUL byte in YAML, integers of more
than 4,300 digits, symlink loops, a 50 MB row, a conversation of 10,000 messages, numbers far out of range in
configs, options and batteries, a prompt longer than the model's context. Each is one clear error naming the file
(line, field, option) within seconds, exit 2, no traceback, and nothing is written."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
from cli_helpers import ROOT, call_main, run_cli, tree_digest

from evalsuite.config.limits import (
    INT_DIGITS,
    MAX_CASES,
    MAX_DEPTH,
    MAX_MESSAGES,
    MAX_NEW_TOKENS,
    MAX_ROW_CHARS,
    MIN_PROMPT_LIMIT,
    RANGES,
    InputLimit,
    check_range,
    loads_json,
)
from evalsuite.errors import EvalsuiteError

TINY = ROOT / "fixtures" / "tiny-base"
DEEP = "[" * 5000 + "]" * 5000  # past Python's recursion limit (1,000)
SHALLOW_DEEP = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)  # parses, but past our limit
HUGE = "9" * (INT_DIGITS + 1)


def chat(user: str = "hi", answer: str = "HI") -> dict[str, object]:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- the reader -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "needle"), [
    (DEEP, f"nested more than {MAX_DEPTH} deep"), (SHALLOW_DEEP, f"[0]{'[0]' * (MAX_DEPTH - 1)}: nested more than"),
    ('{"a": ' + HUGE + "}", f"more than {INT_DIGITS:,} digits"),
    ('{"m": [{"content": "ok \\ud800 x"}]}', r"m[0].content: a lone surrogate ('\ud800')"),
    ('{"\\udfff": 1}', "a key holds a lone surrogate"),
])
def test_loads_json_refuses_each_shape_with_what_and_where(text: str, needle: str) -> None:
    with pytest.raises(InputLimit) as e:
        loads_json(text)
    assert needle in str(e.value)


def test_loads_json_accepts_real_shapes_and_pairs_of_surrogates() -> None:
    assert loads_json('{"e": "\\ud83d\\ude00"}') == {"e": "\U0001F600"}  # a surrogate pair is one character
    nested = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads_json(nested) is not None
    assert loads_json("9" * INT_DIGITS) == int("9" * INT_DIGITS)
    with pytest.raises(InputLimit, match="allowed for one row"):
        loads_json("[1, 2]", max_chars=3)
    with pytest.raises(json.JSONDecodeError):
        loads_json("{broken")


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
@pytest.mark.parametrize(("row", "needle"), [
    ('{"messages": ' + DEEP + "}", "nested more than"),
    ('{"messages": [], "n": ' + HUGE + "}", "digits"),
    (json.dumps(chat("a\ud800b")), "messages[0].content: a lone surrogate"),
])
def test_data_rows_past_a_limit_are_one_located_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      suffix: str, row: str, needle: str) -> None:
    data = tmp_path / f"d{suffix}"
    good = json.dumps(chat())
    data.write_text(f"{good}\n{row}\n" if suffix == ".jsonl" else f"[{good},\n {row}]\n", encoding="utf-8")
    assert call_main(["lint", "--tokenizer", TINY, "--data", data], timeout=60) == 2
    line = one_error(capsys)
    assert f"{data}:2: " in line and needle in line, line


def test_tool_call_arguments_nested_deep_in_a_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    call = {"type": "function", "function": {"name": "f", "arguments": DEEP}}
    row = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [call]}]}
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(row) + "\n", encoding="utf-8")
    assert call_main(["lint", "--tokenizer", TINY, "--data", data], timeout=60) == 2
    line = one_error(capsys)
    assert f"{data}:1" in line and "arguments" in line and "nested more than" in line, line


def test_a_50_mb_row_is_refused_in_seconds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(chat()) + "\n" + json.dumps(chat("x" * 50_000_000)) + "\n", encoding="utf-8")
    start = time.monotonic()
    assert call_main(["lint", "--tokenizer", TINY, "--data", data], timeout=60) == 2
    took = time.monotonic() - start
    line = one_error(capsys)
    assert f"{data}:2: the row is longer than {MAX_ROW_CHARS:,} characters" in line, line
    print(f"50 MB row refused in {took:.2f} s")
    array = tmp_path / "d.json"
    array.write_text("[" + json.dumps(chat()) + ",\n" + json.dumps(chat("x" * 50_000_000)) + "]", encoding="utf-8")
    assert call_main(["lint", "--tokenizer", TINY, "--data", array], timeout=60) == 2
    assert f"{array}:2: the row is longer than" in one_error(capsys)


def test_a_conversation_of_10000_messages_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    turns = [m for i in range(5000) for m in chat(f"q{i}", f"a{i}")["messages"]]  # type: ignore[attr-defined]
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": turns}) + "\n", encoding="utf-8")
    assert call_main(["lint", "--tokenizer", TINY, "--data", data], timeout=60) == 2
    line = one_error(capsys)
    assert f"10,000 messages, more than the {MAX_MESSAGES:,} allowed" in line and f"{data}:1" in line, line


def test_results_files_past_a_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = json.loads((Path(__file__).parent / "data" / "results" / "good.json").read_text(encoding="utf-8"))
    cases = {"deep": '{"schema_version": 2, "x": ' + DEEP + "}",
             "huge": '{"schema_version": ' + HUGE + "}",
             "surrogate": json.dumps({**good, "created": "\ud800"})}
    for name, text in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(text, encoding="utf-8")
        before = tree_digest(tmp_path)
        for argv in (["gate", path, "--gate", "a.b>=1"], ["report", path, "-o", tmp_path / "r.html"],
                     ["baseline", "record", path, "-o", tmp_path / "b.json", "--force"]):
            assert call_main(argv) == 2, argv
            line = one_error(capsys)
            assert str(path) in line and ("nested" in line or "digits" in line or "surrogate" in line), line
        assert tree_digest(tmp_path) == before


@pytest.mark.parametrize(("text", "needle"), [
    ("base_model: x\x00\n", r":1: invalid YAML: character '\x00' is not allowed"),
    (f"lora_r: {HUGE}\n", f"more than {INT_DIGITS:,} digits"),
    ('base_model: "a\\ud800"\n', "base_model: a lone surrogate"),
    ("a:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(MAX_DEPTH + 2)), "nested more than"),
    ("a: " + DEEP + "\n", "nested"),
])
def test_yaml_past_a_limit_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                        needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text, encoding="utf-8")
    assert call_main(["lint", cfg], timeout=60) == 2
    line = one_error(capsys)
    assert str(cfg) in line and needle in line, line


def test_symlink_loops_as_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loop = tmp_path / "a"
    loop.symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(loop)
    for argv in (["lint", loop], ["lint", "--tokenizer", TINY, "--data", loop], ["gate", loop, "--gate", "a.b>=1"],
                 ["report", loop, "-o", tmp_path / "r.html"], ["probe", loop, "--out", tmp_path / "r.json"]):
        assert call_main(argv, timeout=60) == 2, argv
        line = one_error(capsys)
        assert str(loop) in line and ("symbolic links" in line or "symlink loop" in line or "no such" in line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_gguf_arrays_nested_thousands_deep(tmp_path: Path) -> None:
    from evalsuite.gguf.reader import read_gguf

    def key(name: str) -> bytes:
        return struct.pack("<Q", len(name)) + name.encode()

    depth = 5000  # each level: an array (type 9) of one array; the innermost holds no items
    value = b"".join(struct.pack("<IQ", 9, 1) for _ in range(depth)) + struct.pack("<IQ", 5, 0)
    path = tmp_path / "deep.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + key("x.deep") + struct.pack("<I", 9) + value)
    with pytest.raises(EvalsuiteError, match=f"arrays nested more than {MAX_DEPTH} deep"):
        read_gguf(path)


# --- numeric ranges -------------------------------------------------------------------------------------------

def test_check_range_names_the_setting_and_the_range() -> None:
    with pytest.raises(EvalsuiteError, match=r"^--max-new-tokens: 99,999,999,999 is out of range; expected 1 to "):
        check_range("max_new_tokens", 99_999_999_999, "--max-new-tokens")
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(EvalsuiteError, match="max_batch_seconds"):
            check_range("max_batch_seconds", bad)
    check_range("max_new_tokens", MAX_NEW_TOKENS)
    check_range("no_such_setting", 10**100)  # no range known: not judged
    assert all(low <= high for low, high in RANGES.values())


@pytest.mark.parametrize(("line", "needle"), [
    ("lora_r: 100000000", "lora_r: 100,000,000 is out of range; expected 1 to 16,384"),
    ("max_steps: 100000000000000000000000000000000", "max_steps: 1.000e+32 is out of range"),
    ("max_steps: 1e32", "max_steps: expected a positive integer"),
    ("sequence_len: 99999999999", "sequence_len: 99,999,999,999 is out of range"),
    ("seed: 4294967296", "seed: 4,294,967,296 is out of range"),
])
def test_config_numbers_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str,
                                     needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"base_model: {TINY}\n{line}\n", encoding="utf-8")
    assert call_main(["lint", cfg], timeout=60) == 2
    got = one_error(capsys)
    assert f"{cfg}:2: {needle}" in got, got


@pytest.mark.parametrize(("option", "value"), [("--max-new-tokens", "99999999999"), ("--max-batch-seconds", "nan"),
                                               ("--max-batch-seconds", "inf"), ("--batch-size", "10000000"),
                                               ("--seed", "-1"), ("--squad-n", "1000000000")])
def test_probe_options_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str,
                                    value: str) -> None:
    out = tmp_path / "r.json"
    assert call_main(["probe", TINY, option, value, "--out", out, "--device", "cpu"], timeout=60) == 2
    line = one_error(capsys)
    assert line.startswith(f"error: {option}: ") and ("out of range" in line or "expected" in line), line
    assert not out.exists()


def test_train_max_steps_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"base_model: {TINY}\n", encoding="utf-8")
    assert call_main(["train", cfg, "--max-steps", "1000000000000", "--output-dir", tmp_path / "run"]) == 2
    assert "--max-steps: 1,000,000,000,000 is out of range" in one_error(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("body", "needle"), [
    ("generate:\n  - source: synth_text\n    n: 100000000\n    seed: 1\n",
     f"generate: n: 100,000,000 is out of range; expected 0 to {MAX_CASES:,}"),
    ("max_new_tokens: 1000000000\ncases:\n  - {prompt: hi, expected: x}\n",
     "max_new_tokens: 1,000,000,000 is out of range"),
    ("cases:\n  - messages: [" + ", ".join(["{role: user, content: x}"] * (MAX_MESSAGES + 1)) + "]\n",
     f"more than the {MAX_MESSAGES:,} allowed"),
])
def test_battery_fields_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str,
                                     needle: str) -> None:
    battery = tmp_path / "b.yaml"
    battery.write_text("name: b\nscorer: exact_match\n" + body, encoding="utf-8")
    start = time.monotonic()
    assert call_main(["probe", TINY, "--battery", battery, "--out", tmp_path / "r.json", "--device", "cpu"],
                     timeout=60) == 2
    assert time.monotonic() - start < 30  # refused, not generated (100M cases took hours)
    line = one_error(capsys)
    assert str(battery) in line and needle in line, line


def test_a_prompt_longer_than_the_context_is_refused_before_generating(tmp_path: Path) -> None:
    """A 1M-character prompt: one error naming its size and the model's limit (a subprocess: a hang would be in C)."""
    battery = tmp_path / "b.yaml"
    battery.write_text("name: long\nscorer: exact_match\ncases:\n  - {id: a, prompt: \"" + "hello world " * 90_000
                       + "\", expected: x}\n", encoding="utf-8")
    done = run_cli("probe", TINY, "--battery", battery, "--out", tmp_path / "r.json", "--device", "cpu",
                   "--no-cache", timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(done.error_lines) == 1, done.stderr[-2000:]
    line = done.error_lines[0]
    assert "is longer than the" in line and f"{MIN_PROMPT_LIMIT:,} tokens this model takes" in line, line
    assert "context length is 256" in line  # the tiny model's config
    assert not (tmp_path / "r.json").exists()


def test_score_squad_unknown_ids_is_short(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = tmp_path / "dev.json"
    qas = [{"id": f"q{i}", "question": "?", "answers": [{"text": "a", "answer_start": 0}]} for i in range(500)]
    dataset.write_text(json.dumps({"version": "1.1", "data": [{"paragraphs": [{"context": "a", "qas": qas}]}]}),
                       encoding="utf-8")
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({f"other-{i}": "a" for i in range(50)}), encoding="utf-8")
    assert call_main(["score", "squad", "--dataset", dataset, "--predictions", preds]) == 2
    err = capsys.readouterr().err
    assert len(err) < 400 and "none of its 50 question ids" in err and "'other-0'" in err and "q1" not in err, err
    preds.write_text(json.dumps({"q0": "a", "q1": "b", "zzz": "a"}), encoding="utf-8")
    assert call_main(["score", "squad", "--dataset", dataset, "--predictions", preds]) == 0
    out = capsys.readouterr()
    assert "1 prediction(s) for question ids not in" in out.err and "'zzz'" in out.err
    assert json.loads(out.out)["exact_match"] == pytest.approx(100 / 500)  # q0 right; q1 wrong; 498 unanswered
