"""Helpers for the lint tests: locate the shared third-party fixtures and build tokenizers from them.

- :func:`build_llama3` makes a Llama-3 fast tokenizer from the GPT-2-format vocabulary in the fixtures plus Meta's
  published special-token layout (ids 128000-128255) and the Llama-3 pre-tokenizer regex.
- :func:`build_gemma_standin` makes a tiny tokenizer with Gemma's control tokens at Gemma's ids and the gemma-it
  tokenizer_config (template, specials): the fixtures have no Gemma vocabulary (the real tokenizer.json is 17 MB and
  was not obtainable), and the Gemma rules only need the control tokens to be single tokens.
- :func:`tiny_dir` is the project's own tiny tokenizer (committed, or built by its builder).
Builds are cached per test session by the callers (pytest ``tmp_path_factory``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_DATA = Path(__file__).resolve().parent / "lint_data"

# Meta's Llama 3 tokenizer: 256 special tokens after the 128,000 BPE ranks.
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|reserved_special_token_2|>", "<|reserved_special_token_3|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"] + \
                  [f"<|reserved_special_token_{i}|>" for i in range(5, 251)]
LLAMA3_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                r"""\s*[\r\n]+|\s+(?!\S)|\s+""")


def fixtures_dir() -> Path:
    p = Path(os.environ.get("EVALSUITE_FIXTURES", ROOT.parent / "shared" / "fixtures"))
    if not p.is_dir():
        pytest.skip(f"third-party fixtures not found at {p} (set EVALSUITE_FIXTURES)")
    return p


def fixture(rel: str) -> Path:
    p = fixtures_dir() / rel
    if not p.exists():
        pytest.skip(f"fixture {rel} missing")
    return p


def template(name: str) -> str:
    return fixture(f"templates/{name}").read_text(encoding="utf-8")


def build_llama3(out: Path, eos: str = "<|eot_id|>", chat_template: str | None = None) -> Path:
    """A Llama-3 tokenizer dir (tokenizer.json + tokenizer_config.json) from the GPT-2-format fixture files."""
    src = fixture("tokenizers/llama3.2-ollama-gpt2format")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "tokenizer.json").exists():
        vocab = json.loads((src / "encoder.json").read_text(encoding="utf-8"))
        merges = [line for line in (src / "vocab.bpe").read_text(encoding="utf-8").splitlines()
                  if line and not line.startswith("#version")]
        added = [{"id": 128000 + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for i, t in enumerate(LLAMA3_SPECIALS)]
        tj: dict[str, Any] = {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
            "post_processor": {"type": "Sequence", "processors": [
                {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
                {"type": "TemplateProcessing",
                 "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                            {"Sequence": {"id": "A", "type_id": 0}}],
                 "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                          {"Sequence": {"id": "A", "type_id": 0}},
                          {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                          {"Sequence": {"id": "B", "type_id": 1}}],
                 "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000],
                                                          "tokens": ["<|begin_of_text|>"]}}}]},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                      "vocab": vocab, "merges": merges},
        }
        (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>", "eos_token": eos,
              "model_max_length": 8192, "clean_up_tokenization_spaces": True}
    if chat_template is not None:
        config["chat_template"] = chat_template
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return out


def build_gemma_standin(out: Path) -> Path:
    """Gemma's control tokens at Gemma's ids (pad 0, eos 1, bos 2, unk 3, <start_of_turn> 106, <end_of_turn> 107)
    over a small character vocabulary, with the real gemma-it tokenizer_config.json."""
    cfg_src = fixture("tokenizers/gemma-it/tokenizer_config.json")
    out.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(33, 127)] + ["\u2581", "\n"]
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    for i in range(4, 106):
        vocab[f"<unused{i}>"] = i
    vocab["<start_of_turn>"], vocab["<end_of_turn>"] = 106, 107
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
          "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
          "pre_tokenizer": None, "post_processor": None, "decoder": None,
          "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                    "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": False, "ignore_merges": False,
                    "vocab": vocab, "merges": []}}
    (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    shutil.copyfile(cfg_src, out / "tokenizer_config.json")
    return out


def tiny_dir(tmp: Path) -> Path:
    """The project's tiny ChatML tokenizer files (tokenizer.json + tokenizer_config.json), copied on their own.

    Copied without the model's config.json on purpose: next to a ``model_type: qwen2`` config, transformers'
    AutoTokenizer swaps the class for Qwen2Tokenizer (see tokenizer_compat); these tests are about the tokenizer
    as written, and a separate test lints the committed model dir the way the trainer loads it."""
    from evalsuite.fixtures.tiny_model import tiny_tokenizer_dir

    out = tmp / "tiny-tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    committed = tiny_tokenizer_dir()
    if (committed / "tokenizer.json").is_file():
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(committed / name, out / name)
    else:
        from evalsuite.fixtures.tokenizer_builder import build_tokenizer

        build_tokenizer(out)
    return out


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def chat(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


# -- pytest fixtures (import them into a test module to use them) ------------------------------------------------

@pytest.fixture(scope="session", name="llama3_dir")
def fixture_llama3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_llama3(tmp_path_factory.mktemp("llama3"))


@pytest.fixture(scope="session", name="gemma_dir")
def fixture_gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_gemma_standin(tmp_path_factory.mktemp("gemma"))


@pytest.fixture(scope="session", name="tiny_tok")
def fixture_tiny_tok(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session", name="phi3_dir")
def fixture_phi3_dir() -> Path:
    return fixture("tokenizers/phi3-mini-4k-instruct")


def template_file(name: str) -> str:
    """A template path: ours (tests/lint_data) or a real one from the fixtures."""
    ours = LINT_DATA / name
    return str(ours if ours.is_file() else fixture(f"templates/{name}"))


def run(tok: Path, rows: list[Any], tmp: Path, template: str | None = None, **options: Any) -> Any:
    """Lint ``rows`` with the tokenizer in ``tok`` (the --tokenizer/--data form); returns the LintReport."""
    from evalsuite.lint.runner import run_lint
    from evalsuite.lint.setup import from_options

    data = write_jsonl(tmp / f"data{len(list(tmp.glob('data*.jsonl')))}.jsonl", rows)
    ignore = options.pop("ignore", set())
    setup = from_options(str(tok), [str(data)], chat_template=template_file(template) if template else None,
                         **options)
    setup.ignore |= set(ignore)
    return run_lint(setup)


def rules(report: Any) -> dict[str, Any]:
    return {f.rule: f for f in report.findings}


def echo_rows(words: tuple[str, ...] = ("hello", "good morning", "cat on a mat")) -> list[dict[str, Any]]:
    return [chat(("user", w), ("assistant", w.upper())) for w in words]


# Each rule's severity, written out here rather than read from the registry, so that a rule quietly downgraded (or
# upgraded) in the code fails the tests: error blocks (exit 1), warning and info do not.
SEVERITY = {
    "eos-not-trained": "error",
    "stop-token-not-generated": "error",
    "open-turn-at-end": "error",
    "missing-generation-prompt": "error",
    "control-token-split": "error",  # warning when the marker is plain text by the tokenizer's design
    "special-text-in-content": "warning",
    "train-infer-mismatch": "error",
    "not-prefix-preserving": "warning",
    "boundary-shift": "warning",
    "no-trainable-tokens": "warning",  # error when no row at all is left to train
    "eos-truncated": "warning",
    "double-bos": "warning",
    "missing-bos": "warning",
    "double-eos": "warning",
    "template-error": "error",
    "role-not-in-template": "error",
    "injected-text": "warning",
    "prompt-trained": "error",  # info when train_on_inputs asks for it
    "packing-contamination": "error",
    "vocab-out-of-range": "error",
    "unicode-roundtrip": "error",
    "untrained-special-embeddings": "error",  # info when modules_to_save trains those rows
    "span-mismatch": "warning",
    "tokenizer-not-replayed": "warning",
    "reasoning-dropped": "error",
    "empty-reasoning": "warning",
    "tools-ignored": "error",
    "tool-calls-dropped": "error",
    "tool-call-as-text": "warning",
}


def pinned_exit_code(findings: list[Any], severity: dict[str, str] | None = None) -> int:
    """The exit code the table says these findings give: 1 if one that is not ignored is an error."""
    table = {**SEVERITY, **(severity or {})}
    return 1 if any(table[f.rule] == "error" and not f.ignored for f in findings) else 0


# -- stand-in tokenizers carrying each model's control tokens (evalsuite.fixtures.standins) ----------------------

def standin_dir(tmp_factory: pytest.TempPathFactory, template_name: str) -> Path:
    """The tokenizer dir of the model whose template is ``template_name`` (tokenizer.json with its control tokens,
    its chat template, and its generation_config.json stop ids); built once per session."""
    from evalsuite.fixtures.standins import BY_TEMPLATE, write_tokenizer

    model = BY_TEMPLATE[template_name]
    root = tmp_factory.getbasetemp() / "standins" / model.name
    if not (root / "generation_config.json").is_file():
        write_tokenizer(root, fixtures_dir(), model)
    return root


def lint_standin(tok: Path, rows: list[Any], tmp: Path, **options: Any) -> Any:
    """Lint ``rows`` with a stand-in tokenizer dir and its own generation config (the model's stop ids)."""
    return run(tok, rows, tmp, generation_config=str(tok / "generation_config.json"), **options)


def embedding_base(tmp: Path, vocab: int, zero_rows: tuple[int, ...] = (), bf16: bool = False) -> Path:
    """A local 'base model' for the embedding rules: config.json + an embedding matrix (and a head sharing it) in
    model.safetensors, the rows in ``zero_rows`` zeroed; bf16 writes the embedding alone, in bfloat16."""
    import numpy as np

    d = tmp / "base"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({"vocab_size": vocab}), encoding="utf-8")
    emb = np.random.default_rng(0).normal(0, 0.02, size=(vocab, 8)).astype(np.float32)
    for r in zero_rows:
        emb[r] = 0.0
    if bf16:
        _write_bf16(d / "model.safetensors", "model.embed_tokens.weight", emb)
    else:
        from safetensors.numpy import save_file

        save_file({"model.embed_tokens.weight": emb, "lm_head.weight": emb}, str(d / "model.safetensors"))
    return d


def _write_bf16(path: Path, name: str, arr: Any) -> None:
    raw = (arr.view("<u4") >> 16).astype("<u2").tobytes()
    header = json.dumps({name: {"dtype": "BF16", "shape": list(arr.shape), "data_offsets": [0, len(raw)]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw)
