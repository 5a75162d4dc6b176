"""A GGUF's vocabulary, as llama.cpp runs it, behind the interface evalsuite's chat code reads a tokenizer through.

:class:`~evalsuite.chat.tokenizer.TokenizerInfo` wraps a ``tokenizers.Tokenizer``; :class:`LlamaCppBackend` answers
the same few calls (``token_to_id``, ``encode``, ``decode``, ``get_added_tokens_decoder``, ``get_vocab_size``) with
llama.cpp's tokenizer and detokenizer, so the probe's :class:`~evalsuite.probe.generation.PromptCodec` (rendering,
role headers, finish reasons, decoding) works on a GGUF column unchanged, and what it tokenizes is what llama.cpp
feeds the model.
"""

from __future__ import annotations

from pathlib import Path

from evalsuite.chat.tokenizer import SPECIAL_NAMES, BackendAddedToken, BackendEncoding, TokenizerInfo
from evalsuite.gguf.llama import LlamaCpp
from evalsuite.gguf.reader import GGUFFile


class LlamaCppBackend:
    """The slice of ``tokenizers.Tokenizer`` that :class:`TokenizerInfo` uses, answered by llama.cpp."""

    def __init__(self, llama: LlamaCpp) -> None:
        self.llama = llama
        self._specials = llama.special_tokens

    def token_to_id(self, token: str) -> int | None:
        hit = self._specials.get(token)
        if hit is not None:
            return hit[0]
        ids = self.llama.tokenize(token, add_special=False)
        return ids[0] if len(ids) == 1 else None

    def encode(self, text: str, add_special_tokens: bool = False) -> BackendEncoding:
        return BackendEncoding(self.llama.tokenize(text, add_special=add_special_tokens))

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.llama.detokenize(ids, special=not skip_special_tokens)

    def get_added_tokens_decoder(self) -> dict[int, BackendAddedToken]:
        return {tid: BackendAddedToken(text, control) for text, (tid, control) in self._specials.items()}

    def get_vocab_size(self, with_added_tokens: bool = True) -> int:
        return self.llama.n_vocab


def gguf_tokenizer(llama: LlamaCpp, gguf: GGUFFile, template: str | None) -> TokenizerInfo:
    """The GGUF's tokenizer as a :class:`TokenizerInfo`. The named special tokens are the ones llama.cpp resolves
    (its bos/eos, which a template reads as ``bos_token`` / ``eos_token``), the pad token from the metadata."""
    texts = {"bos_token": llama.bos_id, "eos_token": llama.eos_id, "pad_token": gguf.token_id("padding"),
             "unk_token": gguf.token_id("unknown")}
    special: dict[str, str | None] = dict.fromkeys(SPECIAL_NAMES)
    for name, tid in texts.items():
        if tid is not None and 0 <= tid < llama.n_vocab:
            special[name] = llama.token_text(tid)
    return TokenizerInfo(path=Path(gguf.path), tokenizer=LlamaCppBackend(llama), chat_template=template,
                         special=special, config={"add_bos_token": llama.add_bos})
