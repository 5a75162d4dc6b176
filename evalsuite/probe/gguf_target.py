"""A GGUF file as a probe column: ``evalsuite probe RUN_DIR model.gguf`` probes what you deploy beside what you
trained.

Building the column is cheap but real: the header is read first (a file that is not a GGUF, or is truncated, is one
error before anything loads), then llama.cpp loads the vocabulary only, to give the column its codec:

- the template is the one embedded in the GGUF (what llama.cpp and Ollama render), through evalsuite's jinja2
  sandbox like any untrusted template; without one, llama.cpp's fallback (ChatML). ``--gguf-template training``
  uses the training template of the run dirs instead, to separate template drift from weight drift;
- the prompt ids are what llama.cpp's chat path feeds the model (its tokenizer, its BOS handling);
- the stop ids are llama.cpp's end-of-generation tokens, so a GGUF that never stops runs to ``max-tokens`` or into a
  ``new-turn`` exactly as the seeds' models did. They are recorded per column in the results.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalsuite.chat.template import CHATML
from evalsuite.errors import EvalsuiteError
from evalsuite.files import sha256_file, sha256_text
from evalsuite.gguf.reader import read_gguf
from evalsuite.probe.generation import Messages, PromptCodec, Tools
from evalsuite.results.schema import AdapterInfo

LARGE_FILE = 256 * 2**20  # fingerprinted by size + mtime above this, like the base model's weight files


def is_gguf(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".gguf"


def split_columns(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(run dirs, GGUF files) among the columns given, each in the order given."""
    return [p for p in paths if not is_gguf(p)], [p for p in paths if is_gguf(p)]


class GGUFCodec(PromptCodec):
    """A codec whose prompt ids come from llama.cpp's chat path (BOS handling included)."""

    def prompt_ids(self, messages: Messages, tools: Tools = ()) -> list[int]:
        return list(self.tk.tokenizer.llama.chat_prompt_ids(self.prompt_text(messages, tools)))


def gguf_column(path: Path, name: str, template_mode: str, training: str | None, base: str | None) -> Any:
    """The :class:`~evalsuite.probe.targets.Target` of one GGUF file (engine ``gguf``, the file its engine's model).
    ``base``: the run dirs' base model, recorded as the column's base so the report compares the GGUF with the
    columns it was probed beside (it is that base with an adapter merged in); without run dirs, the file itself."""
    from evalsuite.gguf.llama import LlamaCpp, llama_cpp_version
    from evalsuite.gguf.tokenizer import gguf_tokenizer
    from evalsuite.probe.targets import Target

    file = read_gguf(path)
    template, source = _template(file.chat_template, template_mode, training, path)
    llama = LlamaCpp(path, vocab_only=True)
    tk = gguf_tokenizer(llama, file, template)
    codec = GGUFCodec.build(tk, template, sorted(llama.eog_ids))
    stop_tokens = [llama.token_text(i) for i in sorted(llama.eog_ids)]
    weights = sha256_file(path) if path.stat().st_size <= LARGE_FILE else None
    hashes: dict[str, str | None] = {
        "weights": weights or f"{path.stat().st_size}:{path.stat().st_mtime_ns}", "adapter_config": None,
        "template": sha256_text(template), "tokenizer": f"llama.cpp {llama_cpp_version()}"}
    info = AdapterInfo(name=name, kind="gguf", base_model=base or str(path.resolve()), path=str(path),
                       weights_sha256=weights)
    facts = {"engine": "gguf", "template": source, "stop_ids": sorted(llama.eog_ids), "stop_tokens": stop_tokens,
             "add_bos": llama.add_bos, "llama_cpp_python": llama_cpp_version()}
    # The file is the model: its engine's plain base (no adapter attached), one engine per file.
    return Target(name, "gguf", None, path, str(path.resolve()), codec, info, hashes, engine="gguf",
                  engine_info=facts)


def _template(embedded: str | None, mode: str, training: str | None, path: Path) -> tuple[str, str]:
    if mode == "training":
        if training is None:
            raise EvalsuiteError(f"{path}: --gguf-template training needs a run dir column to take the template from")
        return training, "training"
    if embedded is None:
        return CHATML, "chatml-fallback (no template in the GGUF)"
    return embedded, "embedded"


def gguf_columns(paths: Sequence[Path], taken: set[str], template_mode: str, training: str | None,
                 base: str | None = None) -> list[Any]:
    """One column per GGUF file, named by its file name (``model.gguf``), its folder prefixed on a clash."""
    names = [p.name for p in paths]
    names = [f"{p.resolve().parent.name}-{p.name}" if names.count(p.name) > 1 or p.name in taken else p.name
             for p in paths]
    if len(set(names)) != len(names):
        raise EvalsuiteError("the same GGUF file is given twice")
    return [gguf_column(p, n, template_mode, training, base) for p, n in zip(paths, names, strict=True)]
