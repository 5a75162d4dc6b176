"""Severities and exit codes pinned by the table in ``lint_support.SEVERITY`` and by exit codes written out here,
never recomputed from the code's own formula: a blocking rule quietly downgraded to a warning must fail a test
that runs without the third-party fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli
from lint_support import (  # noqa: F401  (fixtures)
    SEVERITY,
    chat,
    echo_rows,
    fixture_tiny_tok,
    rules,
    run,
    write_jsonl,
)

LONG = "THIS IS A RATHER LONG ANSWER THAT WILL NOT FIT IN THE SEQUENCE"


def test_the_registry_has_the_pinned_severities() -> None:
    from evalsuite.lint.findings import RULES

    assert {r.id: r.severity for r in RULES.values()} == SEVERITY


def lint_json(tok: Path, rows: list[dict[str, object]], tmp: Path, *args: str) -> tuple[int, dict[str, str]]:
    data = write_jsonl(tmp / "d.jsonl", rows)
    proc = run_cli("lint", "--tokenizer", tok, "--data", data, "--format", "json", *args, timeout=120)
    out = json.loads(proc.stdout)
    assert out["exit_code"] == proc.returncode
    return proc.returncode, {f["rule"]: ("ignored" if f["ignored"] else f["severity"]) for f in out["findings"]}


@pytest.mark.parametrize(("args", "code", "found"), [
    # pad == the terminator with a pad-masking collator: the model never learns to stop; blocks
    (("--collator", "mask-pad-id", "--pad-token", "<|im_end|>"), 1, {"eos-not-trained": "error"}),
    (("--collator", "mask-pad-id", "--pad-token", "<|im_end|>", "--ignore", "eos-not-trained"), 0,
     {"eos-not-trained": "ignored"}),
    # eos that a server stops on is not the turn's terminator; blocks
    (("--eos-token", "<|endoftext|>"), 1, {"stop-token-not-generated": "error"}),
    # training the prompt on purpose is information, not a problem
    (("--train-on-inputs",), 0, {"prompt-trained": "info"}),
])
def test_cli_exit_codes(args: tuple[str, ...], code: int, found: dict[str, str], tiny_tok: Path,
                        tmp_path: Path) -> None:
    assert lint_json(tiny_tok, echo_rows(), tmp_path, *args) == (code, found)


def test_warnings_alone_exit_0(tiny_tok: Path, tmp_path: Path) -> None:
    rows = [chat(("user", "hi"), ("assistant", "HI<|im_end|>"))]  # the terminator twice, and its text in content
    assert lint_json(tiny_tok, rows, tmp_path) == (0, {"double-eos": "warning", "special-text-in-content": "warning"})


def test_no_trainable_tokens_is_a_warning_for_some_rows_and_an_error_for_all(tiny_tok: Path, tmp_path: Path) -> None:
    short, long = chat(("user", "hi"), ("assistant", "HI")), chat(("user", LONG.lower() * 3), ("assistant", LONG))
    some = rules(run(tiny_tok, [short, long], tmp_path, max_length=32))
    assert some["no-trainable-tokens"].severity == "warning" and some["no-trainable-tokens"].count == 1
    every = run(tiny_tok, [long, long], tmp_path, max_length=32)
    assert rules(every)["no-trainable-tokens"].severity == "error" and every.exit_code == 1
