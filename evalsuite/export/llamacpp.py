"""``evalsuite export SOURCE --gguf FILE``: run llama.cpp's own ``convert_hf_to_gguf.py`` on the merged folder.

evalsuite never carries llama.cpp code: the user names a llama.cpp checkout (``--llama-cpp DIR`` or
``LLAMA_CPP_DIR``; an extracted llama-cpp-python source distribution works too, it ships one under
``vendor/llama.cpp``). Before converting, a staging copy of the merged folder is prepared for what llama.cpp reads
differently from transformers, each change keeping the token ids the model was trained on:

- an embedding padded past the tokenizer (the tiny base has 448 rows for 421 tokens; Qwen2 and Phi-3 pad too): the
  converter's Hugging Face path writes one GGUF token per tokenizer entry, and llama.cpp then refuses the file
  (``token_embd.weight has wrong shape``). The staging tokenizer gets llama.cpp's own placeholders, ``[PAD421]``...,
  as special tokens up to the embedding's size.
- a byte-fallback BPE vocabulary with literal spaces and no normalizer: the converter writes it as a SentencePiece
  (``llama``) vocabulary, and llama.cpp's SentencePiece tokenizer turns every space into ``▁`` and prepends one, so
  ``hello world`` would reach the model as byte tokens it never saw. The staging tokenizer spells spaces as ``▁``
  (normalizer ``' '`` -> ``▁``, decoder back) with no prefix space, which is the same tokenizer in HF terms.

The GGUF is written next to FILE under a temporary name and moved into place when the converter succeeded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_json

CONVERTER = "convert_hf_to_gguf.py"
OUTTYPES = ("f32", "f16", "q8_0")
SPACE = "\u2581"  # SentencePiece's word-boundary mark, which llama.cpp writes for spaces
HOW_TO_GET = ("pass --llama-cpp DIR (a llama.cpp checkout) or set LLAMA_CPP_DIR; `pip download --no-binary :all: "
              "--no-deps llama-cpp-python` fetches a source distribution that ships one under vendor/llama.cpp")


def find_converter(llama_cpp: str | Path | None) -> Path:
    """``convert_hf_to_gguf.py`` in DIR or DIR/vendor/llama.cpp (DIR from the flag, else LLAMA_CPP_DIR)."""
    value = llama_cpp or os.environ.get("LLAMA_CPP_DIR")
    if not value:
        raise EvalsuiteError(f"--gguf needs llama.cpp's {CONVERTER}: {HOW_TO_GET}")
    root = Path(value).expanduser()
    for candidate in (root / CONVERTER, root / "vendor" / "llama.cpp" / CONVERTER):
        if candidate.is_file():
            return candidate
    raise EvalsuiteError(f"{root}: no {CONVERTER} there or under vendor/llama.cpp ({HOW_TO_GET})")


def stage(merged: Path, out: Path) -> list[str]:
    """Copy ``merged`` to ``out`` (weights linked) and prepare its tokenizer for llama.cpp; returns what changed."""
    out.mkdir(parents=True, exist_ok=True)
    for f in merged.iterdir():
        if f.is_file():
            if f.suffix == ".safetensors":
                os.symlink(f.resolve(), out / f.name)
            else:
                shutil.copyfile(f, out / f.name)
    tj = read_json(out / "tokenizer.json")
    config = read_json(out / "tokenizer_config.json") if (out / "tokenizer_config.json").is_file() else {}
    model_config = read_json(out / "config.json")
    notes = [n for n in (_spm_spaces(tj, config, out), _pad_vocab(tj, config, model_config),
                         _special_flags(out / "tokenizer.json", config)) if n]
    (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return notes


def _n_tokens(tj: dict[str, Any]) -> int:
    ids = [*tj["model"].get("vocab", {}).values(), *(t["id"] for t in tj.get("added_tokens", []))]
    return max(ids) + 1 if ids else 0


def _pad_vocab(tj: dict[str, Any], config: dict[str, Any], model_config: Any) -> str | None:
    rows = model_config.get("vocab_size") if isinstance(model_config, dict) else None
    have = _n_tokens(tj)
    if not isinstance(rows, int) or rows <= have:
        return None
    pads = [f"[PAD{i}]" for i in range(have, rows)]
    tj.setdefault("added_tokens", []).extend(
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True} for i, t in enumerate(pads, start=have))
    # Named as extra special tokens, the converter marks them control tokens (never matched in text, never shown).
    key = "extra_special_tokens" if "extra_special_tokens" in config else "additional_special_tokens"
    listed = config.get(key)
    config[key] = [*(listed if isinstance(listed, list) else []), *pads]
    return f"tokenizer padded with {len(pads)} placeholder tokens {pads[0]}..{pads[-1]} to the embedding's {rows} rows"


def _spm_spaces(tj: dict[str, Any], config: dict[str, Any], folder: Path) -> str | None:
    model = tj.get("model") or {}
    vocab = model.get("vocab") or {}
    merges = model.get("merges") or []
    if (model.get("type") != "BPE" or not model.get("byte_fallback") or (folder / "tokenizer.model").exists()
            or tj.get("normalizer") or tj.get("pre_tokenizer") or SPACE in vocab
            or not any(" " in t for t in vocab) or any(not isinstance(m, list) for m in merges)):
        return None
    model["vocab"] = {t.replace(" ", SPACE): i for t, i in vocab.items()}
    model["merges"] = [[a.replace(" ", SPACE), b.replace(" ", SPACE)] for a, b in merges]
    tj["normalizer"] = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
    decoder = tj.get("decoder") or {"type": "Sequence", "decoders": []}
    steps = decoder["decoders"] if decoder.get("type") == "Sequence" else [decoder]
    tj["decoder"] = {"type": "Sequence",
                     "decoders": [{"type": "Replace", "pattern": {"String": SPACE}, "content": " "}, *steps]}
    config["add_prefix_space"] = False
    return f"spaces spelled {SPACE} for llama.cpp's SentencePiece tokenizer, no prefix space (token ids unchanged)"


def _special_flags(tokenizer_json: Path, config: dict[str, Any]) -> str | None:
    """Write ``add_bos_token`` / ``add_eos_token`` when the config leaves them out (transformers 5 saves none): the
    converter then writes nothing and llama.cpp falls back to its vocabulary type's default, which adds BOS for a
    SentencePiece vocabulary. The values are what the HF tokenizer does to plain text."""
    if "add_bos_token" in config and "add_eos_token" in config:
        return None
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    plain, full = tok.encode("a", add_special_tokens=False).ids, tok.encode("a", add_special_tokens=True).ids
    at = full.index(plain[0]) if plain and plain[0] in full else 0
    config.setdefault("add_bos_token", at > 0)
    config.setdefault("add_eos_token", len(full) - at > len(plain))
    return (f"add_bos_token {str(config['add_bos_token']).lower()}, add_eos_token "
            f"{str(config['add_eos_token']).lower()} written as the HF tokenizer does (llama.cpp's default differs)")


def convert(converter: Path, folder: Path, target: Path, outtype: str) -> None:
    """Run the converter with this Python; the GGUF appears at ``target`` only when it succeeded."""
    if outtype not in OUTTYPES:
        raise EvalsuiteError(f"--outtype: expected one of {', '.join(OUTTYPES)}, got {outtype!r}")
    target = target.resolve()
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    cmd = [sys.executable, str(converter), str(folder), "--outfile", str(partial), "--outtype", outtype]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=converter.parent)
        if done.returncode != 0 or not partial.is_file():
            raise EvalsuiteError(f"{converter}: conversion failed: {_converter_error(done.stdout + done.stderr)}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _converter_error(log: str) -> str:
    missing = re.search(r"No module named '([\w.]+)'", log)
    if missing:
        return f"the converter needs the Python package {missing.group(1)!r} (pip install {missing.group(1)})"
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.search(r"error|exception", ln, re.IGNORECASE)]
    return (errors or lines or ["no output"])[-1][:400]
