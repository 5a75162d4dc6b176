"""The embedded tiny base: tokenizer, synthetic data, committed artefacts and the deterministic builder."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from evalsuite.fixtures import synth, tokenizer_builder
from evalsuite.fixtures import tiny_model as tm

COMMITTED = tm.COMMITTED_DIR
ROUND_TRIP = [
    "Привет, мир! Ёжик и ёлка.",
    "hello 😀 wörld\ttab\n  two  spaces",
    "日本語 ✓ — «quotes» 𝔘",
    "",
]


def _tokenizer() -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tm.tiny_tokenizer_dir() / "tokenizer.json"))


def test_tokenizer_build_is_deterministic_and_matches_committed(tmp_path: Path) -> None:
    first = tokenizer_builder.build_tokenizer(tmp_path / "a")
    second = tokenizer_builder.build_tokenizer(tmp_path / "b")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
        assert (first / name).read_bytes() == (COMMITTED / name).read_bytes(), f"committed {name} is stale"


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip_through_plain_tokenizers(text: str) -> None:
    tok = _tokenizer()
    assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text


def test_character_level_with_byte_fallback() -> None:
    tok = _tokenizer()
    assert tok.encode("Hello, Ёж\n").tokens == list("Hello, Ёж\n")
    assert tok.encode("😀").tokens == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    assert tok.get_vocab_size() == 3 + len(tokenizer_builder.alphabet()) + 256


def test_auto_tokenizer_on_the_model_folder_gives_the_same_ids() -> None:
    """transformers 5 picks the tokenizer class from config.json's model_type (for qwen2 it would rebuild a
    byte-level pipeline that drops spaces, newlines and Cyrillic): loading the shipped folder must not change an id."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(COMMITTED)
    tok = _tokenizer()
    for text in [*ROUND_TRIP, "a\n\n b  c<|im_end|>\n<|im_start|>x", "Don't 'll 123 x!?"]:
        ids = tok.encode(text).ids
        assert hf(text, add_special_tokens=False)["input_ids"] == ids, text
        assert hf.decode(ids) == text


def test_special_tokens_are_single_ids_named_by_config() -> None:
    tok = _tokenizer()
    cfg = json.loads((tm.tiny_tokenizer_dir() / "tokenizer_config.json").read_text(encoding="utf-8"))
    ids = {t: tok.token_to_id(t) for t in tokenizer_builder.SPECIAL_TOKENS}
    assert None not in ids.values() and len(set(ids.values())) == 3
    for token, tid in ids.items():
        assert tok.encode(f"a{token}b").ids == [tok.token_to_id("a"), tid, tok.token_to_id("b")]
    assert cfg["eos_token"] == "<|im_end|>" and cfg["pad_token"] == "<|endoftext|>" and cfg["bos_token"] is None
    assert "<|im_start|>" in cfg["chat_template"]


def test_chat_template_and_encoder_match_transformers() -> None:
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(tm.tiny_tokenizer_dir())
    msgs = [{"role": "system", "content": synth.SYSTEM_UPPER}, {"role": "user", "content": "привет 😀"},
            {"role": "assistant", "content": "ПРИВЕТ 😀"}]
    rendered = hf.apply_chat_template(msgs, tokenize=False)
    assert rendered == ("<|im_start|>system\nRepeat in uppercase.<|im_end|>\n<|im_start|>user\nпривет 😀<|im_end|>\n"
                        "<|im_start|>assistant\nПРИВЕТ 😀<|im_end|>\n")
    prompt = hf.apply_chat_template(msgs[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    enc = tm.ChatEncoder(_tokenizer())
    ids, labels = enc.encode(msgs)
    assert ids == hf(rendered, add_special_tokens=False)["input_ids"]
    trained = [i for i, lab in zip(ids, labels, strict=True) if lab != tm.IGNORE]
    assert hf.decode(trained) == "ПРИВЕТ 😀<|im_end|>"
    assert hf.eos_token_id == enc.end and hf.pad_token_id == enc.pad


def test_synth_is_seeded_and_tasks_are_correct() -> None:
    a = [synth.pretrain_conversation(random.Random(7)) for _ in range(3)]
    b = [synth.pretrain_conversation(random.Random(7)) for _ in range(3)]
    assert a == b
    rng = random.Random(3)
    for mode, (system, fn) in synth.MODES.items():
        for script in synth.SCRIPTS:
            msgs = synth.conversation(rng, mode, script, turns=2)
            assert (msgs[0]["content"] == system) if system else msgs[0]["role"] == "user"
            users = [m["content"] for m in msgs if m["role"] == "user"]
            answers = [m["content"] for m in msgs if m["role"] == "assistant"]
            assert answers == [fn(u) for u in users] and all(1 <= len(u) <= 40 for u in users)


def test_demo_data_is_committed_deterministic_and_disjoint(tmp_path: Path) -> None:
    written = synth.write_demo_data(tmp_path)
    for path in written:
        assert path.read_bytes() == (synth.DATA_DIR / path.name).read_bytes(), f"committed {path.name} is stale"
    train = [json.loads(line) for line in written[0].read_text(encoding="utf-8").splitlines()]
    held = [json.loads(line) for line in written[1].read_text(encoding="utf-8").splitlines()]
    assert len(train) == synth.DEMO_TRAIN_ROWS and len(held) == synth.DEMO_HELDOUT_ROWS
    for row in train:
        user, assistant = row["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert assistant["content"] == user["content"].upper()
    prompts = {row["prompt"] for row in held}
    assert len(prompts) == len(held) and not prompts & {row["messages"][0]["content"] for row in train}
    assert all(row["expected"] == row["prompt"].upper() != row["prompt"] for row in held)
    assert all(ch.isascii() for row in train + held for ch in json.dumps(row, ensure_ascii=False))


def test_committed_base_verifies_and_tampering_is_caught(tmp_path: Path) -> None:
    assert tm.verify(COMMITTED), "fixtures/tiny-base does not match its evalsuite_build.json"
    assert tm.ensure_tiny_base() == COMMITTED
    info = json.loads((COMMITTED / tm.BUILD_INFO).read_text(encoding="utf-8"))
    assert sum((COMMITTED / name).stat().st_size for name in info["files"]) < 5_000_000
    copy = shutil.copytree(COMMITTED, tmp_path / "copy")
    assert tm.verify(copy)
    with (copy / "tokenizer_config.json").open("a", encoding="utf-8") as fh:
        fh.write(" ")
    assert not tm.verify(copy)


def test_ensure_uses_a_verified_cache_without_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = tmp_path / f"tiny-base-{tm.BUILDER_VERSION}"
    shutil.copytree(COMMITTED, cached)
    monkeypatch.setattr(tm, "COMMITTED_DIR", tmp_path / "missing")
    monkeypatch.setattr(tm, "build_tiny_base", lambda *a, **k: pytest.fail("must not rebuild"))
    assert tm.ensure_tiny_base(tmp_path) == cached


def test_cli_refuses_to_overwrite_foreign_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    assert tm.main(["--out", str(tmp_path), "--steps", "1"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_committed_generation_config_stops_on_end_of_turn() -> None:
    gen = json.loads((COMMITTED / "generation_config.json").read_text(encoding="utf-8"))
    tok = _tokenizer()
    assert gen["eos_token_id"] == [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]
    assert gen["pad_token_id"] == tok.token_to_id("<|endoftext|>")


def test_committed_model_echoes_and_follows_case_instructions() -> None:
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(COMMITTED)
    assert model.config.model_type == "llama" and model.config.vocab_size % 64 == 0
    enc = tm.ChatEncoder(_tokenizer())
    rng = random.Random(2024)
    texts = [synth.random_text(rng, script, max_chars=24) for script in synth.SCRIPTS for _ in range(6)]
    cases = [(None, lambda s: s), (synth.SYSTEM_UPPER, str.upper), (synth.SYSTEM_LOWER, str.lower)]
    for system, fn in cases:
        head = [{"role": "system", "content": system}] if system else []
        answers = tm.greedy_answers(model, enc, [[*head, {"role": "user", "content": t}] for t in texts])
        correct = sum(a == fn(t) for a, t in zip(answers, texts, strict=True))
        assert correct >= len(texts) - 2, (system, list(zip(texts, answers, strict=True)))
    # The base never uppercases by default: that is the skill the demo's adapter has to learn.
    lower = [t for t in texts if t.upper() != t]
    answers = tm.greedy_answers(model, enc, [[{"role": "user", "content": t}] for t in lower])
    assert sum(a == t.upper() for a, t in zip(answers, lower, strict=True)) <= 1


@pytest.mark.slow
def test_builder_is_deterministic(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    spec = dataclasses.replace(tm.BuildSpec(), steps=15, batch_size=16, eval_prompts=4)
    first = tm.build_tiny_base(tmp_path / "a", spec, log=lambda _msg: None)
    second = tm.build_tiny_base(tmp_path / "b", spec, log=lambda _msg: None)
    assert first["metrics"]["final_train_loss"] == second["metrics"]["final_train_loss"]
    assert first["files"] == second["files"]
    assert set(tm.REQUIRED_FILES) <= set(first["files"])
    assert tm.verify(tmp_path / "a", spec) and not tm.verify(tmp_path / "a")  # not the default spec
    assert first["metrics"]["final_train_loss"] < 7.0  # a real loss, not NaN
