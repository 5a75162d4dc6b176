"""`evalsuite lint` as a user runs it: exit codes, text and JSON output, bad input (one clear line naming the file
and row, exit 2, no traceback), sandbox escapes refused, and no torch/transformers/datasets on the lint path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import CliResult, run_cli
from lint_support import (  # noqa: F401  (fixtures)
    LINT_DATA,
    chat,
    echo_rows,
    fixture_llama3_dir,
    fixture_tiny_tok,
    template_file,
    write_jsonl,
)


def lint(*args: str, cwd: Path | None = None) -> CliResult:
    return run_cli("lint", *args, cwd=cwd, timeout=120, traceback_ok=True)  # the tests say where none is allowed


def assert_bad_input(proc: CliResult, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line, line
    for needle in needles:
        assert needle in line, line


def test_clean_run_exits_0_and_prints_a_summary(tiny_tok: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", echo_rows())
    proc = lint("--tokenizer", str(tiny_tok), "--data", str(data), "--show", "1")
    assert proc.returncode == 0, proc.stderr
    assert "3 rows" in proc.stdout and "0 error(s)" in proc.stdout and "no findings" in proc.stdout
    # --show renders the sample as tokens with the trained run marked
    assert "\u00abHELLO<|im_end|>\u00bb" in proc.stdout.replace("\n", "")


def test_error_finding_exits_1_and_json_follows_the_schema(tiny_tok: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", echo_rows())
    proc = lint("--tokenizer", str(tiny_tok), "--data", str(data), "--chat-template",
                str(LINT_DATA / "chatml_always_open.jinja"), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert out["schema_version"] == 1 and out["exit_code"] == 1
    f = next(f for f in out["findings"] if f["rule"] == "open-turn-at-end")
    assert f["severity"] == "error" and f["count"] == 3 and not f["ignored"]
    ex = f["examples"][0]
    assert set(ex) >= {"row", "text", "tokens", "labels"} and ex["row"].endswith("d.jsonl:1")
    assert len(ex["tokens"]) == len(ex["labels"])
    assert {"rows", "tokens", "trainable_fraction_by_role", "truncated_rows"} <= set(out["stats"])
    ignored = lint("--tokenizer", str(tiny_tok), "--data", str(data), "--chat-template",
                   str(LINT_DATA / "chatml_always_open.jinja"), "--format", "json",
                   "--ignore", "open-turn-at-end", "--ignore", "missing-generation-prompt")
    assert ignored.returncode == 0
    assert all(f["ignored"] for f in json.loads(ignored.stdout)["findings"] if f["severity"] == "error")


def test_config_form_and_its_ignore_list(tiny_tok: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", echo_rows())
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"base_model: {tiny_tok}\nchat_template: jinja\n"
                   f"chat_template_jinja: {LINT_DATA / 'chatml_always_open.jinja'}\n"
                   f"datasets:\n  - path: {data}\n    type: chat_template\n", encoding="utf-8")
    assert lint(str(cfg)).returncode == 1
    cfg.write_text(cfg.read_text() + "ignore: [open-turn-at-end, missing-generation-prompt]\n", encoding="utf-8")
    assert lint(str(cfg)).returncode == 0


@pytest.mark.parametrize("content,needle", [
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null}]}',
     "d.jsonl:2: messages[1].content: expected a string or a list of text parts, got null"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}',
     "d.jsonl:2: messages[1].content: expected a string or a list of text parts, missing"),
    ('{"messages": [{"role": "user", "content": ["hi"]}, {"role": "assistant", "content": "x"}]}',
     'd.jsonl:2: messages[0].content[0]: expected a content part {"type": "text", "text": ...}, got "hi"'),
    ('{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}',
     "d.jsonl:2: messages[0].content[0].type: only text parts are supported, got 'image_url'"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "tool_calls": '
     '[{"type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}',
     "d.jsonl:2: messages[1].tool_calls[0].function.arguments: not valid JSON"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "tool_calls": '
     '[{"type": "function", "function": {"arguments": {}}}]}]}',
     "d.jsonl:2: messages[1].tool_calls[0].function.name: expected a string, missing"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", '
     '"reasoning_content": 7}]}', "d.jsonl:2: messages[1].reasoning_content: expected a string, got 7"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "weight": 2}]}',
     "d.jsonl:2: messages[1].weight: expected 0 or 1, got 2"),
    ('{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {}}]}',
     "d.jsonl:2: tools[0]: expected"),
    ('{"messages": [{"role": "user", "content": "hi"}], "tools": "[{"}', "d.jsonl:2: tools: not valid JSON"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "HI"}',
     "d.jsonl:2: invalid JSON"),
    ('{"messages": []}', "d.jsonl:2: messages: expected a non-empty list"),
    ('[1, 2]', "d.jsonl:2: expected a JSON object"),
])
def test_bad_rows_name_file_row_and_field(tiny_tok: Path, tmp_path: Path, content: str, needle: str) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(chat(("user", "a"), ("assistant", "A"))) + "\n" + content + "\n", encoding="utf-8")
    assert_bad_input(lint("--tokenizer", str(tiny_tok), "--data", str(data)), needle)


def test_non_utf8_file(tiny_tok: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_bytes(json.dumps(chat(("user", "a"), ("assistant", "A"))).encode() + b"\n" +
                     '{"messages": [{"role": "user", "content": "caf\u00e9"}]}'.encode("latin-1") + b"\n")
    assert_bad_input(lint("--tokenizer", str(tiny_tok), "--data", str(data)), "d.jsonl:2: not UTF-8")


def test_tokenizer_without_chat_template(llama3_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", echo_rows())
    assert_bad_input(lint("--tokenizer", str(llama3_dir), "--data", str(data)), "no chat template",
                     "d.jsonl:1")


def test_template_that_fails_names_the_row(tiny_tok: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", echo_rows())
    assert_bad_input(lint("--tokenizer", str(tiny_tok), "--data", str(data), "--chat-template",
                          str(LINT_DATA / "broken_call.jinja")), "d.jsonl:1: chat template")


def test_template_syntax_error(tiny_tok: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", echo_rows())
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}{{ m.content }}", encoding="utf-8")
    assert_bad_input(lint("--tokenizer", str(tiny_tok), "--data", str(data), "--chat-template", str(bad)),
                     "syntax error")


@pytest.mark.parametrize("escape", [
    "{{ messages.__class__.__mro__ }}",
    "{{ m.__class__.__init__.__globals__ }}",
    "{{ ''.__class__.__base__.__subclasses__() }}",
    "{{ raise_exception.__globals__ }}",
    "{% set ns = namespace() %}{% set ns.__dict__ = 1 %}",
    "{{ cycler.__init__.__globals__.os }}",
])
def test_sandbox_escapes_are_refused(tiny_tok: Path, tmp_path: Path, escape: str) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", echo_rows())
    t = tmp_path / "escape.jinja"
    t.write_text("{% for m in messages %}{{ m.content }}{% endfor %}" + escape, encoding="utf-8")
    proc = lint("--tokenizer", str(tiny_tok), "--data", str(data), "--chat-template", str(t))
    assert proc.returncode == 2, proc.stdout
    assert "Traceback" not in proc.stderr and "d.jsonl:1" in proc.stderr
    assert "refused by the sandbox" in proc.stderr or "undefined" in proc.stderr


@pytest.mark.parametrize("args,needle", [
    ([], "give a CONFIG, or both --tokenizer DIR and --data FILE"),
    (["--tokenizer", "/nonexistent/tok", "--data", "x.jsonl"], "/nonexistent/tok"),
    (["--ignore", "no-such-rule"], "unknown lint rule no-such-rule"),
    (["--max-length", "0"], "--max-length"),
])
def test_usage_errors(tiny_tok: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", echo_rows())
    full = args if not args or args[0] == "--tokenizer" else ["--tokenizer", str(tiny_tok), "--data", str(data),
                                                              *args]
    assert_bad_input(lint(*full), needle)


def test_missing_data_file(tiny_tok: Path, tmp_path: Path) -> None:
    assert_bad_input(lint("--tokenizer", str(tiny_tok), "--data", str(tmp_path / "nope.jsonl")), "nope.jsonl",
                     "no such file")


def test_bad_config_value_names_file_line_key(tiny_tok: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"base_model: {tiny_tok}\nsequence_len: lots\n", encoding="utf-8")
    assert_bad_input(lint(str(cfg)), "c.yaml:2: sequence_len: expected a positive integer")


def test_lint_never_imports_torch_transformers_or_datasets(tiny_tok: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", echo_rows())
    args = ["lint", "--tokenizer", str(tiny_tok), "--data", str(data), "--format", "json"]
    code = (f"import sys; from evalsuite.cli import main; rc = main({args!r}); heavy = sorted(m for m in "
            "sys.modules if m.split('.')[0] in ('torch', 'transformers', 'datasets')); print(heavy, file=sys.stderr); "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[]"


def test_json_object_file_is_not_taken_for_records(tiny_tok: Path, tmp_path: Path) -> None:
    data = tmp_path / "squad.json"
    data.write_text(json.dumps({"data": [{"title": "x"}], "version": "1.1"}, indent=1), encoding="utf-8")
    assert_bad_input(lint("--tokenizer", str(tiny_tok), "--data", str(data)), "squad.json:1: expected a JSON array")
