"""Prompt codec (no model): turn-start detection on real templates, and finish reasons from generated ids."""

from __future__ import annotations

from pathlib import Path

import pytest
from evalsuite.fixtures.tokenizer_builder import build_tokenizer

from evalsuite.chat.encode import end_of_turn_token
from evalsuite.chat.tokenizer import TokenizerInfo, load_tokenizer
from evalsuite.probe.generation import PromptCodec, role_headers

BROKEN = (  # no <|im_end|> after an assistant turn, and an assistant header always appended
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}{{- '<|im_start|>assistant\\n' + message['content'] }}"
    "{%- else %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}{{- '<|im_start|>assistant\\n' }}"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TokenizerInfo:
    return load_tokenizer(build_tokenizer(tmp_path_factory.mktemp("tok")))


def ids(tk: TokenizerInfo, text: str) -> list[int]:
    return tk.encode(text)


def test_chatml_turn_start_and_headers(tiny: TokenizerInfo) -> None:
    assert tiny.chat_template is not None
    starts, headers = role_headers(tiny, tiny.chat_template)
    assert starts == {tiny.token_id("<|im_start|>")}
    assert set(headers) >= {"<|im_start|>user\n", "<|im_start|>assistant\n", "<|im_start|>system\n"}


def test_phi3_role_tokens_are_turn_starts(shared_fixtures: Path) -> None:
    tk = load_tokenizer(shared_fixtures / "tokenizers" / "phi3-mini-4k-instruct")
    assert tk.chat_template is not None
    starts, _ = role_headers(tk, tk.chat_template)
    assert starts == {tk.token_id(t) for t in ("<|user|>", "<|assistant|>", "<|system|>")}
    codec = PromptCodec.build(tk, tk.chat_template, [tk.token_id("<|end|>") or 0])
    assert codec.finish(ids(tk, "Paris<|end|>"))[1] == "eos"
    assert codec.finish(ids(tk, "Paris<|user|>"))[1] == "new-turn"


def test_finish_reasons(tiny: TokenizerInfo) -> None:
    assert tiny.chat_template is not None
    codec = PromptCodec.build(tiny, tiny.chat_template, [tiny.token_id("<|im_end|>") or 0])
    kept, reason, produced = codec.finish(ids(tiny, "HELLO<|im_end|>"))
    assert (tiny.decode(kept), reason, produced) == ("HELLO", "eos", 6)
    kept, reason, produced = codec.finish(ids(tiny, "HELLO<|im_start|>assistant"))
    assert (tiny.decode(kept), reason, produced) == ("HELLO", "new-turn", 6)
    kept, reason, produced = codec.finish(ids(tiny, "HELLO HELLO"))
    assert (tiny.decode(kept), reason, produced) == ("HELLO HELLO", "max-tokens", 11)
    kept, reason, _ = codec.finish(ids(tiny, "HELLO###more"), stop_strings=("###",))
    assert (tiny.decode(kept), reason) == ("HELLO", "stop-string")
    assert codec.decode(ids(tiny, "A<|endoftext|>B")) == ("AB", "A<|endoftext|>B")
    assert "<|im_start|>assistant\n" in codec.markers and "<|endoftext|>" in codec.markers


def test_a_turn_start_listed_as_end_of_turn_is_still_a_new_turn(tiny: TokenizerInfo) -> None:
    """The broken template's "end of turn" is the next header, so the run dir stops on <|im_start|>; emitting it
    is still the model starting another turn, not a clean stop."""
    eot = end_of_turn_token(BROKEN, tiny)
    assert eot == "<|im_start|>"
    codec = PromptCodec.build(tiny, BROKEN, [tiny.token_id(eot) or 0])
    assert codec.finish(ids(tiny, "HELLO<|im_start|>assistant"))[1] == "new-turn"
    assert codec.finish(ids(tiny, "HELLO<|im_end|>"))[1] == "eos"  # the tokenizer's eos is always a stop


def test_run_dirs_with_the_same_tokenizer_files_share_one_parsed_backend(tmp_path: Path) -> None:
    """A session of N adapters trained on one base parses their (byte-identical) tokenizer once; any difference in
    the files gives its own backend."""
    import json
    import shutil

    first = build_tokenizer(tmp_path / "a")
    same, other = tmp_path / "b", tmp_path / "c"
    shutil.copytree(first, same)
    shutil.copytree(first, other)
    config = json.loads((other / "tokenizer_config.json").read_text(encoding="utf-8"))
    (other / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 77}), encoding="utf-8")
    a, b, c = load_tokenizer(first), load_tokenizer(same), load_tokenizer(other)
    assert (a.path, b.path) == (first, same) and a.tokenizer is b.tokenizer and c.tokenizer is not a.tokenizer
    assert a.encode("hello world") == b.encode("hello world") == c.encode("hello world")
