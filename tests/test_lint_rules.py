"""Every rule, failing and passing, on the project's tiny tokenizer and on real tokenizers (Llama-3 built from the
fixtures' vocabulary, Phi-3's tokenizer.json; Gemma's control tokens on a stand-in vocabulary).

A few combinations cannot fail by construction and are only shown passing: the tiny tokenizer is character-level
with byte fallback and no BOS, so it never shifts a boundary, never loses a character and never adds a BOS of its
own (``boundary-shift``, ``unicode-roundtrip``, ``missing-bos`` fail on real tokenizers instead).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lint_support import (  # noqa: F401  (fixtures)
    SEVERITY,
    chat,
    echo_rows,
    embedding_base,
    fixture_gemma_dir,
    fixture_llama3_dir,
    fixture_phi3_dir,
    fixture_tiny_tok,
    pinned_exit_code,
    rules,
    run,
)

MULTI = [chat(("user", "hi"), ("assistant", "HI"), ("user", "bye"), ("assistant", "BYE"))]
TEXT = [{"prompt": "Q: capital of France?\nA: ", "completion": "Paris"}]
TEXT_OK = [{"prompt": "Q: capital of France?\nA:", "completion": " Paris"}]
LONG = [chat(("user", "hi"), ("assistant", "THIS IS A RATHER LONG ANSWER THAT WILL NOT FIT"))]
SYSTEM = [chat(("system", "Answer in capitals."), ("user", "hi"), ("assistant", "HI"))]
TOOLS = [{"type": "function", "function": {"name": "shout", "parameters": {"type": "object"}}}]
CALL = {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "shout",
                                                                                          "arguments": {"x": "hi"}}}]}
TOOL_ROWS = [{"messages": [{"role": "user", "content": "hi"}, CALL, {"role": "tool", "content": "HI"},
                           {"role": "assistant", "content": "HI"}], "tools": TOOLS}]
CALL_AS_TEXT = [{"messages": [{"role": "user", "content": "hi"},
                              {"role": "assistant", "content": '{"name": "shout", "arguments": {"x": "hi"}}'}],
                 "tools": TOOLS}]
REASONING_FIELD = [{"messages": [{"role": "user", "content": "hi"},
                                 {"role": "assistant", "content": "HI", "reasoning_content": "Capitals were asked."}]}]
REASONING_INLINE = [chat(("user", "hi"), ("assistant", "<think>\nCapitals were asked.\n</think>\n\nHI"))]
QWEN25, QWEN3 = "Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen-Qwen3-0.6B.jinja"


def gen_config(ids: list[int]) -> Callable[[Path], dict[str, Any]]:
    def make(tmp: Path) -> dict[str, Any]:
        p = tmp / "generation_config.json"
        p.write_text(json.dumps({"eos_token_id": ids}), encoding="utf-8")
        return {"generation_config": str(p)}

    return make


def model_dir(vocab: int, zero_rows: tuple[int, ...] = (), bf16: bool = False) -> Callable[[Path], dict[str, Any]]:
    """A local 'base model' (``lint_support.embedding_base``) as a case's options."""
    return lambda tmp: {"base_model": str(embedding_base(tmp, vocab, zero_rows, bf16))}


def renamed_class(cls: str) -> Callable[[Path, Path], Path]:
    def make(tok: Path, tmp: Path) -> Path:
        d = tmp / "tok"
        shutil.copytree(tok, d, dirs_exist_ok=True)
        cfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
        cfg["tokenizer_class"] = cls
        (d / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
        return d

    return make


@dataclass
class Case:
    rule: str
    tok: str
    present: bool
    rows: list[Any] = field(default_factory=echo_rows)
    template: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    files: Callable[[Path], dict[str, Any]] | None = None
    tokdir: Callable[[Path, Path], Path] | None = None
    special: dict[str, str] | None = None
    severity: dict[str, str] = field(default_factory=dict)  # where the context changes a rule's severity

    @property
    def id(self) -> str:
        return f"{self.rule}-{'fails' if self.present else 'passes'}-{self.tok}-{self.template or 'own'}"


L3, L3_OLD = "Meta-Llama-3-8B-Instruct.jinja", "Meta-Llama-3-8B-Instruct__original-2024-04.jinja"
CASES = [
    Case("eos-not-trained", "tiny", True, options={"collator": "mask-pad-id", "pad_token": "<|im_end|>"}),
    Case("eos-not-trained", "tiny", True, template="chatml_tags_content_only.jinja"),
    Case("eos-not-trained", "tiny", False, options={"collator": "mask-pad-id"}),
    Case("eos-not-trained", "llama3", True, template=L3, options={"collator": "mask-pad-id"}),
    Case("eos-not-trained", "llama3", False, template=L3),
    Case("stop-token-not-generated", "tiny", True, options={"eos_token": "<|endoftext|>"}),
    Case("stop-token-not-generated", "tiny", False),
    Case("stop-token-not-generated", "llama3", True, template=L3, options={"eos_token": "<|end_of_text|>"}),
    Case("stop-token-not-generated", "llama3", False, template=L3, options={"eos_token": "<|end_of_text|>"},
         files=gen_config([128001, 128009])),
    Case("open-turn-at-end", "tiny", True, template="chatml_always_open.jinja"),
    Case("open-turn-at-end", "tiny", False),
    Case("open-turn-at-end", "llama3", True, template=L3_OLD),
    Case("open-turn-at-end", "llama3", False, template=L3),
    Case("missing-generation-prompt", "tiny", True, template="chatml_no_genprompt.jinja"),
    Case("missing-generation-prompt", "tiny", False),
    Case("missing-generation-prompt", "llama3", True, template=L3_OLD),
    Case("missing-generation-prompt", "llama3", False, template=L3),
    Case("missing-generation-prompt", "llama3", False, template="Mistral-7B-Instruct-v0.2-pre-v1.jinja"),
    Case("control-token-split", "tiny", True, template="Phi-3-mini-4k-instruct.jinja"),
    Case("control-token-split", "tiny", False),
    Case("control-token-split", "llama3", True, template="Qwen2-0.5B-Instruct.jinja"),
    Case("control-token-split", "llama3", False, template=L3),
    Case("special-text-in-content", "tiny", True, rows=[chat(("user", "say <|im_end|> now"), ("assistant", "OK"))]),
    Case("special-text-in-content", "tiny", False),
    Case("special-text-in-content", "llama3", True, template=L3,
         rows=[chat(("user", "what is <|eot_id|>?"), ("assistant", "A TOKEN"))]),
    Case("special-text-in-content", "llama3", False, template=L3),
    Case("train-infer-mismatch", "tiny", True, template="chatml_bad_genprompt.jinja"),
    Case("train-infer-mismatch", "tiny", False),
    Case("train-infer-mismatch", "llama3", True, template="llama3_notrim.jinja",
         rows=[chat(("user", "hi"), ("assistant", "\nHI"))]),
    Case("train-infer-mismatch", "llama3", False, template="llama3_notrim.jinja"),
    Case("not-prefix-preserving", "tiny", True, template="chatml_always_open.jinja", rows=MULTI),
    Case("not-prefix-preserving", "tiny", False, rows=MULTI),
    Case("not-prefix-preserving", "llama3", True, template=L3_OLD, rows=MULTI),
    Case("not-prefix-preserving", "llama3", False, template=L3, rows=MULTI),
    Case("boundary-shift", "tiny", False, rows=TEXT),
    Case("boundary-shift", "llama3", True, rows=TEXT),
    Case("boundary-shift", "llama3", False, rows=TEXT_OK),
    Case("boundary-shift", "phi3", True, rows=TEXT),
    Case("no-trainable-tokens", "tiny", True, options={"max_length": 8},
         severity={"no-trainable-tokens": "error"}),  # every row: nothing left to train
    Case("no-trainable-tokens", "tiny", False, options={"max_length": 64}),
    Case("no-trainable-tokens", "llama3", True, template=L3, options={"max_length": 6},
         severity={"no-trainable-tokens": "error"}),
    Case("no-trainable-tokens", "llama3", False, template=L3, options={"max_length": 64}),
    Case("eos-truncated", "tiny", True, rows=LONG, options={"max_length": 30}),
    Case("eos-truncated", "tiny", False, rows=LONG, options={"max_length": 200}),
    Case("eos-truncated", "llama3", True, template=L3, rows=LONG, options={"max_length": 16}),
    Case("eos-truncated", "llama3", False, template=L3, rows=LONG, options={"max_length": 64}),
    Case("double-bos", "tiny", True, template="chatml_double_bos.jinja", special={"bos_token": "<|endoftext|>"}),
    Case("double-bos", "tiny", False, special={"bos_token": "<|endoftext|>"}),
    Case("double-bos", "llama3", True, rows=[{"prompt": "<|begin_of_text|>Q: hi\nA:", "completion": " HI"}]),
    Case("double-bos", "llama3", False, rows=TEXT_OK),
    Case("missing-bos", "tiny", False),
    Case("missing-bos", "llama3", True, template="llama3_nobos.jinja"),
    Case("missing-bos", "llama3", False, template=L3),
    Case("double-eos", "tiny", True, rows=[chat(("user", "hi"), ("assistant", "HI<|im_end|>"))]),
    Case("double-eos", "tiny", False),
    Case("double-eos", "llama3", True, template=L3, rows=[chat(("user", "hi"), ("assistant", "HI<|eot_id|>"))]),
    Case("double-eos", "llama3", False, template=L3),
    Case("template-error", "tiny", True, template="chatml_no_system.jinja", rows=SYSTEM),
    Case("template-error", "tiny", False, template="chatml_no_system.jinja"),
    Case("template-error", "llama3", True, template="Mistral-7B-Instruct-v0.1.jinja", rows=SYSTEM),
    Case("template-error", "llama3", False, template="Mistral-7B-Instruct-v0.1.jinja"),
    Case("role-not-in-template", "tiny", True, template="chatml_known_roles.jinja",
         rows=[chat(("user", "hi"), ("function", "42"), ("assistant", "HI"))]),
    Case("role-not-in-template", "tiny", False, template="chatml_known_roles.jinja"),
    Case("role-not-in-template", "phi3", True, template="Phi-3-mini-4k-instruct.jinja",
         rows=[chat(("user", "hi"), ("tool", "42"), ("assistant", "HI"))]),
    Case("role-not-in-template", "phi3", False, template="Phi-3-mini-4k-instruct.jinja"),
    Case("injected-text", "tiny", True, template="Qwen-Qwen2.5-7B-Instruct.jinja"),
    Case("injected-text", "tiny", False, template="Qwen-Qwen2.5-7B-Instruct.jinja", rows=SYSTEM),
    Case("injected-text", "llama3", True, template="meta-llama-Llama-3.1-8B-Instruct.jinja"),
    Case("injected-text", "llama3", False, template=L3),
    Case("prompt-trained", "tiny", True, template="chatml_tags_header.jinja"),
    Case("prompt-trained", "tiny", False, template="chatml_tags.jinja"),
    Case("prompt-trained", "llama3", True, template="llama3_tags_header.jinja"),
    Case("prompt-trained", "llama3", False, template=L3),
    Case("packing-contamination", "tiny", True, options={"packing": True, "collator": "mask-pad-id"}),
    Case("packing-contamination", "tiny", False, options={"packing": True}),
    Case("packing-contamination", "llama3", True, template=L3, options={"packing": True, "collator": "mask-pad-id"}),
    Case("packing-contamination", "llama3", False, template=L3, options={"packing": True}),
    Case("vocab-out-of-range", "tiny", True, files=model_dir(64)),
    Case("vocab-out-of-range", "tiny", False, files=model_dir(512)),
    Case("vocab-out-of-range", "llama3", True, template=L3, files=model_dir(128000)),
    Case("vocab-out-of-range", "llama3", False, template=L3, files=model_dir(128256)),
    Case("unicode-roundtrip", "gemma", True, rows=[chat(("user", "hi"), ("assistant", "HI 🙂"))],
         files=gen_config([1, 107])),
    Case("unicode-roundtrip", "tiny", False, rows=[chat(("user", "hi"), ("assistant", "ПРИВЕТ 🙂"))]),
    Case("unicode-roundtrip", "llama3", False, template=L3, rows=[chat(("user", "hi"), ("assistant", "ПРИВЕТ 🙂"))]),
    Case("unicode-roundtrip", "phi3", False, template="Phi-3-mini-4k-instruct.jinja",
         rows=[chat(("user", "hi"), ("assistant", "ПРИВЕТ 🙂"))]),
    Case("untrained-special-embeddings", "tiny", True, files=model_dir(512, zero_rows=(1, 2))),
    Case("untrained-special-embeddings", "tiny", False, files=model_dir(512)),
    Case("untrained-special-embeddings", "llama3", True, template=L3,
         files=model_dir(128256, zero_rows=(128006, 128007, 128009), bf16=True)),
    Case("untrained-special-embeddings", "llama3", False, template=L3, files=model_dir(128256, bf16=True)),
    Case("span-mismatch", "tiny", True, template="chatml_tags_content_only.jinja"),
    Case("span-mismatch", "tiny", False, template="chatml_tags.jinja"),
    Case("span-mismatch", "llama3", True, template="llama3_tags_header.jinja"),
    Case("span-mismatch", "llama3", False, template=L3),
    Case("tokenizer-not-replayed", "tiny", True, tokdir=renamed_class("BertTokenizer")),
    Case("tokenizer-not-replayed", "tiny", False),
    Case("tokenizer-not-replayed", "phi3", True, template="Phi-3-mini-4k-instruct.jinja",
         tokdir=renamed_class("CodeLlamaTokenizer")),
    Case("tokenizer-not-replayed", "phi3", False, template="Phi-3-mini-4k-instruct.jinja"),
    Case("reasoning-dropped", "tiny", True, rows=REASONING_FIELD),
    Case("reasoning-dropped", "tiny", False, rows=REASONING_INLINE),
    Case("reasoning-dropped", "llama3", True, template=L3, rows=REASONING_FIELD),
    Case("reasoning-dropped", "llama3", False, template=L3, rows=REASONING_INLINE),
    Case("empty-reasoning", "tiny", True, template=QWEN3),
    Case("empty-reasoning", "tiny", False, template=QWEN3, rows=REASONING_FIELD),
    Case("empty-reasoning", "llama3", True, template=QWEN3),
    Case("empty-reasoning", "llama3", False, template=L3),
    Case("tools-ignored", "tiny", True, rows=TOOL_ROWS),
    Case("tools-ignored", "tiny", False, template=QWEN25, rows=TOOL_ROWS),
    Case("tools-ignored", "llama3", True, template=L3, rows=TOOL_ROWS),
    Case("tools-ignored", "llama3", False, template="meta-llama-Llama-3.1-8B-Instruct.jinja", rows=TOOL_ROWS),
    Case("tool-calls-dropped", "tiny", True, rows=TOOL_ROWS),
    Case("tool-calls-dropped", "tiny", False, template=QWEN25, rows=TOOL_ROWS),
    Case("tool-calls-dropped", "llama3", True, template=L3, rows=TOOL_ROWS),
    Case("tool-calls-dropped", "llama3", False, template="meta-llama-Llama-3.1-8B-Instruct.jinja", rows=TOOL_ROWS),
    Case("tool-call-as-text", "tiny", True, template=QWEN25, rows=CALL_AS_TEXT),
    Case("tool-call-as-text", "tiny", False, template=QWEN25, rows=TOOL_ROWS),
    Case("tool-call-as-text", "llama3", True, template="meta-llama-Llama-3.1-8B-Instruct.jinja", rows=CALL_AS_TEXT),
    Case("tool-call-as-text", "llama3", False, template="meta-llama-Llama-3.1-8B-Instruct.jinja", rows=TOOL_ROWS),
]


def test_every_rule_has_failing_and_passing_cases() -> None:
    from evalsuite.lint.findings import RULES

    failing = {c.rule for c in CASES if c.present}
    passing = {c.rule for c in CASES if not c.present}
    assert failing == set(RULES) and passing == set(RULES)
    real = {c.rule for c in CASES if c.present and c.tok != "tiny"}
    assert real == set(RULES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_rule(case: Case, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    fixture_name = {"tiny": "tiny_tok", "llama3": "llama3_dir", "phi3": "phi3_dir", "gemma": "gemma_dir"}[case.tok]
    tok = request.getfixturevalue(fixture_name)
    if case.tokdir is not None:
        tok = case.tokdir(tok, tmp_path)
    options = dict(case.options)
    if case.files is not None:
        options.update(case.files(tmp_path))
    report = _run(tok, case, tmp_path, options)
    found = rules(report)
    if case.present:
        assert case.rule in found, f"{case.rule} not reported; got {sorted(found)}"
        f = found[case.rule]
        assert f.count >= 1 and f.message
        pinned = {**SEVERITY, **case.severity}
        assert {x.rule: x.severity for x in report.findings} == {x.rule: pinned[x.rule] for x in report.findings}
        assert report.exit_code == pinned_exit_code(report.findings, case.severity)
    else:
        assert case.rule not in found, found.get(case.rule)


def _run(tok: Path, case: Case, tmp: Path, options: dict[str, Any]) -> Any:
    if case.special is None:
        return run(tok, case.rows, tmp, template=case.template, **options)
    from lint_support import template_file, write_jsonl

    from evalsuite.lint.runner import run_lint
    from evalsuite.lint.setup import from_options

    data = write_jsonl(tmp / "rows.jsonl", case.rows)
    setup = from_options(str(tok), [str(data)], chat_template=template_file(case.template) if case.template else None,
                         **options)
    setup.tk = setup.tk.with_special(case.special)
    return run_lint(setup)


def test_ignore_keeps_the_finding_but_unblocks(tiny_tok: Path, tmp_path: Path) -> None:
    report = run(tiny_tok, echo_rows(), tmp_path, template="chatml_always_open.jinja")
    assert report.exit_code == 1
    ignored = run(tiny_tok, echo_rows(), tmp_path, template="chatml_always_open.jinja",
                  ignore={"open-turn-at-end", "missing-generation-prompt", "not-prefix-preserving"})
    f = rules(ignored)["open-turn-at-end"]
    assert f.ignored and ignored.exit_code == 0


def test_untrained_embeddings_are_info_when_lora_trains_them(tiny_tok: Path, tmp_path: Path) -> None:
    options = model_dir(512, zero_rows=(1, 2))(tmp_path)
    from lint_support import write_jsonl

    from evalsuite.lint.runner import run_lint
    from evalsuite.lint.setup import from_options

    setup = from_options(str(tiny_tok), [str(write_jsonl(tmp_path / "d.jsonl", echo_rows()))], **options)
    setup.modules_to_save = ["embed_tokens", "lm_head"]
    f = rules(run_lint(setup))["untrained-special-embeddings"]
    assert f.severity == "info" and "<|im_start|>" in f.message and "<|im_end|>" in f.message


def test_committed_tiny_model_dir_is_linted_as_the_trainer_loads_it(tmp_path: Path) -> None:
    """AutoTokenizer on the tiny base dir picks its class from config.json (model_type qwen2 -> Qwen2Tokenizer, a
    byte-level rebuild); the lint must see the same tokenizer, so it reports lost characters exactly when
    transformers' tokenizer loses them."""
    transformers = pytest.importorskip("transformers")
    from evalsuite.fixtures.tiny_model import tiny_tokenizer_dir

    base = tiny_tokenizer_dir()
    if not (base / "config.json").is_file():
        pytest.skip("tiny base not committed")
    hf = transformers.AutoTokenizer.from_pretrained(str(base))
    text = "HELLO WORLD\nПРИВЕТ"
    loses = hf.decode(hf(text, add_special_tokens=False)["input_ids"]) != text
    report = run(base, [chat(("user", "hello world\nпривет"), ("assistant", text))], tmp_path)
    assert ("unicode-roundtrip" in rules(report)) == loses
