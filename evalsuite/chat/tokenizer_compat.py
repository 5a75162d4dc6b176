"""Build the ``tokenizers`` backend the way transformers 5 builds it from the same files, without importing it.

transformers 5 does not always use ``tokenizer.json`` as written: for tokenizer classes with their own constructor
(``LlamaTokenizer``, ``GemmaTokenizer``, ``Qwen2Tokenizer`` ...) it keeps only the vocabulary, merges and
post-processor from the file and rebuilds normalizer, pre-tokenizer, decoder and model options from the class, then
adds the added tokens listed in ``tokenizer_config.json``. For Phi-3's files that changes the ids of any text after a
special token (the file's legacy ``Prepend("▁")`` normalizer becomes a ``Metaspace(prepend_scheme="first")``
pre-tokenizer). The trainer encodes with transformers' object, so the lint must see the same ids: this module
replays that rebuild for the classes below (a test compares both on every tokenizer we have). For other classes
with a custom constructor the file is used as is and :func:`backend_from_files` says so.
"""

from __future__ import annotations

import json
from typing import Any

# Classes transformers uses with tokenizer.json unchanged.
AS_IS = {None, "PreTrainedTokenizerFast", "TokenizersBackend"}

# Pre-tokenizer regex of Qwen2's tokenizer class (a published constant: GPT-4 style, single digits).
QWEN2_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"""
               r"""\s+(?!\S)|\s+""")

_METASPACE_DECODERS = [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"},
    {"type": "Fuse"},
]


def _bpe(model: dict[str, Any], **options: Any) -> dict[str, Any]:
    base = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False}
    return {**base, **options, "vocab": model.get("vocab", {}), "merges": model.get("merges", [])}


def _llama(tj: dict[str, Any], config: dict[str, Any]) -> None:
    add_prefix_space = config.get("add_prefix_space")
    add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
    legacy = config.get("legacy", False)
    scheme = ("first" if not legacy else "always") if add_prefix_space else "never"
    tj["model"] = _bpe(tj["model"], fuse_unk=True, byte_fallback=True)
    tj["normalizer"] = None
    tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": False}
    decoders = list(_METASPACE_DECODERS)
    if add_prefix_space:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    tj["decoder"] = {"type": "Sequence", "decoders": decoders}


def _gemma(tj: dict[str, Any], config: dict[str, Any]) -> None:
    unk = _text(config.get("unk_token")) or "<unk>"
    tj["model"] = _bpe(tj["model"], fuse_unk=True, byte_fallback=True, unk_token=unk)
    tj["normalizer"] = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
    tj["pre_tokenizer"] = {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                           "invert": False}
    tj["decoder"] = {"type": "Sequence", "decoders": list(_METASPACE_DECODERS)}


def _qwen2(tj: dict[str, Any], config: dict[str, Any]) -> None:
    add_prefix_space = bool(config.get("add_prefix_space") or False)
    tj["model"] = _bpe(tj["model"], continuing_subword_prefix="", end_of_word_suffix="")
    tj["normalizer"] = {"type": "NFC"}
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": False},
    ]}
    tj["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}


# Constructor defaults of those classes: transformers uses them when tokenizer_config.json does not name the token
# (and adds the token to the vocabulary when it is missing).
CLASS_DEFAULTS: dict[str, dict[str, str]] = {
    "llama": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
    "gemma": {"unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
              "mask_token": "<mask>"},
    "qwen2": {"unk_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
}

REBUILT = {
    "LlamaTokenizer": _llama, "LlamaTokenizerFast": _llama,
    "GemmaTokenizer": _gemma, "GemmaTokenizerFast": _gemma,
    "Qwen2Tokenizer": _qwen2, "Qwen2TokenizerFast": _qwen2,
}


def class_defaults(config: dict[str, Any], cls: str | None = None) -> dict[str, str]:
    """Special tokens the tokenizer class supplies because the config does not name them."""
    cls = cls or config.get("tokenizer_class")
    family = {"LlamaTokenizer": "llama", "LlamaTokenizerFast": "llama", "GemmaTokenizer": "gemma",
              "GemmaTokenizerFast": "gemma", "Qwen2Tokenizer": "qwen2", "Qwen2TokenizerFast": "qwen2"}.get(cls or "")
    defaults = CLASS_DEFAULTS.get(family or "", {})
    return {k: v for k, v in defaults.items() if k not in config}


def _text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _added_tokens(tj: dict[str, Any], config: dict[str, Any], cls: str | None) -> list[dict[str, Any]]:
    """Added tokens in id order: the config's ``added_tokens_decoder`` when present (what transformers reads),
    else the file's own list; then named special tokens that are still missing."""
    listed = config.get("added_tokens_decoder")
    if isinstance(listed, dict) and listed:
        tokens = [dict(v, id=int(k)) for k, v in listed.items() if isinstance(v, dict) and "content" in v]
    else:
        tokens = [dict(t) for t in tj.get("added_tokens", [])]
    tokens.sort(key=lambda t: t["id"])
    have = {t["content"] for t in tokens}
    names = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]
    defaults = class_defaults(config, cls)
    extra = [_text(config.get(n)) or defaults.get(n) for n in names]
    extra += [_text(t) for t in config.get("additional_special_tokens") or config.get("extra_special_tokens") or []
              if not isinstance(config.get("extra_special_tokens"), dict)]
    for content in extra:
        if content and content not in have:
            tokens.append({"content": content, "special": True, "normalized": False})
            have.add(content)
    return tokens


# transformers 5's AutoTokenizer picks the class from the model's config.json as well: for these model types the
# class registered for the model type wins over tokenizer_config.json's (a published list in tokenization_auto), and
# the registered classes of common model types. `None`: no registered class, the tokenizer config decides.
INCORRECT_HUB_CLASS = frozenset({
    "arctic", "chatlm", "ernie4_5", "ernie4_5_moe", "fuyu", "h2ovl_chat", "hyperclovax", "hyperclovax_vlm",
    "hyperclovax_vision_v2", "internlm2", "internlm3", "iquestcoder", "jamba", "llava", "llava_next", "minicpm3",
    "minicpmv", "minimax_m2", "modernbert", "modernbert-decoder", "molmo", "molmo2", "nemotron", "nvfp4", "opencua",
    "openvla", "paddleocr_vl", "phi3", "phi3_v", "phimoe", "qwen2", "qwen3_5", "qwen3_5_moe", "qwen3_5_moe_text",
    "qwen4_exp", "step3_vl", "vipllava", "cohere_asr", "camembertv2-base", "siglip2", "smolvlm",
})
REGISTERED: dict[str, str | None] = {
    "llama": None, "smollm3": None,
    "qwen2": "Qwen2Tokenizer", "qwen3": "Qwen2Tokenizer", "qwen2_moe": "Qwen2Tokenizer", "qwen3_moe": "Qwen2Tokenizer",
    "gemma": "GemmaTokenizer", "gemma2": "GemmaTokenizer", "gemma3": "GemmaTokenizer", "gemma3_text": "GemmaTokenizer",
    "phi3": "TokenizersBackend", "phimoe": "TokenizersBackend", "mistral": "TokenizersBackend",
    "mixtral": "TokenizersBackend", "olmo2": "TokenizersBackend",
}
_GENERIC = ("TokenizersBackend", "PythonBackend", "PreTrainedTokenizerFast", "MistralCommonBackend")


def _bare(name: str) -> str:
    return name[:-4] if name.endswith("Fast") and name != "PreTrainedTokenizerFast" else name


def effective_class(config: dict[str, Any], model_config: dict[str, Any], byte_level: bool) -> tuple[str | None,
                                                                                                     str | None]:
    """The tokenizer class AutoTokenizer instantiates for a directory, and a note when we are guessing."""
    hub = config.get("tokenizer_class") or model_config.get("tokenizer_class")
    model_type = model_config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        return hub, None
    if model_type not in REGISTERED and model_type not in INCORRECT_HUB_CLASS:
        return hub, None if hub in AS_IS else (f"model_type {model_type}: AutoTokenizer's class choice for it is not "
                                               "replayed; using tokenizer_class from tokenizer_config.json")
    registered = REGISTERED.get(model_type, "TokenizersBackend")
    if hub and _bare(hub) == "LlamaTokenizer" and model_type not in INCORRECT_HUB_CLASS and byte_level:
        return "TokenizersBackend", None  # declared Llama but ships a byte-level tokenizer.json
    if hub and registered and _bare(registered) != _bare(hub):
        if registered not in _GENERIC:
            name = registered if model_type in INCORRECT_HUB_CLASS else hub
            if _bare(name) not in ("TokenizersBackend", "PythonBackend", "PreTrainedTokenizerFast"):
                return name, None
        return "TokenizersBackend", None
    return hub, None


def backend_from_files(tokenizer_json: str, config: dict[str, Any], model_config: dict[str, Any] | None = None
                       ) -> tuple[Any, str | None, str | None]:
    """The ``tokenizers.Tokenizer`` transformers would use, the class it would use, and a note when we could not
    replay its choices."""
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    byte_level = "ByteLevel" in f"{tok.pre_tokenizer} {tok.decoder}"
    cls, note = effective_class(config, model_config or {}, byte_level)
    rebuild = REBUILT.get(cls) if isinstance(cls, str) else None
    if rebuild is None:
        if cls not in AS_IS and note is None:
            note = (f"tokenizer_class {cls} is rebuilt by transformers from tokenizer.json in ways evalsuite does not "
                    "replay; the lint reads tokenizer.json as written")
        _no_padding(tok)
        return tok, cls, note
    tj = json.loads(tokenizer_json)
    if tj.get("model", {}).get("type") != "BPE":
        _no_padding(tok)
        return tok, cls, f"tokenizer_class {cls} with a non-BPE tokenizer.json: read as is"
    rebuild(tj, config)
    added = _added_tokens(tj, config, cls)
    tj["added_tokens"] = []
    tok = Tokenizer.from_str(json.dumps(tj))
    for t in added:
        token = AddedToken(t["content"], single_word=bool(t.get("single_word", False)),
                           lstrip=bool(t.get("lstrip", False)), rstrip=bool(t.get("rstrip", False)),
                           normalized=bool(t.get("normalized", not t.get("special", False))),
                           special=bool(t.get("special", False)))
        tok.add_tokens([token])
    _no_padding(tok)
    return tok, cls, note


def _no_padding(tok: Any) -> None:
    # transformers calls the backend with truncation and padding switched off unless asked; so do we.
    tok.no_truncation()
    tok.no_padding()
