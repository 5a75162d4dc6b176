"""The run dir's stop ids where the tokenizer's eos is not the token that ends an assistant turn (Llama-3's
``<|end_of_text|>`` vs ``<|eot_id|>``; a Qwen base's ``<|endoftext|>`` vs ``<|im_end|>``): a server stopping on eos
alone would run past every answer, so ``generation_config.json`` must list the end-of-turn token too. On the tiny
base eos *is* the end-of-turn token, which is why these tests change one of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lint_support import build_llama3, template
from test_train import train, write_config

from evalsuite.rundir.contract import open_run_dir


@pytest.mark.slow
def test_run_dir_stops_on_the_end_of_turn_token_when_eos_is_another_token(tmp_path: Path, tiny_base: Path) -> None:
    from tokenizers import Tokenizer

    run = train(write_config(tmp_path, tiny_base, max_steps=1, special_tokens={"eos_token": "<|endoftext|>"}))
    tok = Tokenizer.from_file(str(run / "tokenizer.json"))
    eot, eos = tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")
    assert eot is not None and eos is not None and eot != eos
    rd = open_run_dir(run)
    assert json.loads((run / "tokenizer_config.json").read_text())["eos_token"] == "<|endoftext|>"  # as configured
    assert rd.manifest["template"]["end_of_turn"] == "<|im_end|>"
    assert sorted(rd.stop_token_ids) == sorted([eot, eos])
    assert sorted(rd.manifest["template"]["stop_token_ids"]) == sorted([eot, eos])


def test_llama3_stop_ids_are_eot_id_and_end_of_text(tmp_path: Path) -> None:
    """Meta's Llama-3 tokenizer (eos ``<|end_of_text|>``) with its own chat template: the trainer's stop ids are
    ``<|eot_id|>`` (128009), which ends every assistant turn, and the eos (128001)."""
    from evalsuite.trainers.common import stop_token_ids
    from transformers import AutoTokenizer

    from evalsuite.chat.tokenizer import from_transformers

    chat_template = template("Meta-Llama-3-8B-Instruct.jinja")
    tok_dir = build_llama3(tmp_path / "llama3", eos="<|end_of_text|>", chat_template=chat_template)
    hf_tok = AutoTokenizer.from_pretrained(str(tok_dir))
    assert hf_tok.eos_token == "<|end_of_text|>"
    tk = from_transformers(hf_tok, chat_template, str(tok_dir))
    ids, eot = stop_token_ids(hf_tok, tk, chat_template)
    assert eot == "<|eot_id|>"
    assert sorted(ids) == [128001, 128009]
