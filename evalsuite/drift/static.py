"""Static drift checks: what llama.cpp will do with a GGUF, compared with what training did, without generating.

Each check asks llama.cpp itself (through :mod:`evalsuite.gguf.llama`) and compares with the source: the run dir's
tokenizer and training template, and the base model's ``config.json``. The conversations are the batteries' cases,
so a template or tokenizer difference is shown on a prompt the probes really send.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.chat.encode import end_of_turn_token
from evalsuite.chat.template import CHATML, TemplateRaised, render
from evalsuite.chat.tokenizer import TokenizerInfo, load_tokenizer
from evalsuite.drift.findings import Finding, first_difference
from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_json
from evalsuite.gguf.llama import LlamaCpp
from evalsuite.gguf.reader import GGUFFile
from evalsuite.gguf.tokenizer import gguf_tokenizer

Messages = Sequence[dict[str, str]]
SET_META = "gguf_new_metadata.py (llama.cpp's gguf-py)"


@dataclass
class SourceSide:
    path: Path
    tk: TokenizerInfo
    template: str
    config: dict[str, Any]  # the base model's config.json; {} when the base is not a local folder


@dataclass
class GGUFSide:
    file: GGUFFile
    llama: LlamaCpp
    tk: TokenizerInfo
    template: str  # the embedded one, or llama.cpp's ChatML fallback when there is none


def open_source_side(path: Path) -> SourceSide:
    """A run dir or PEFT adapter folder (its training template and tokenizer, its base's config), or the HF model
    folder the GGUF was converted from (a base, or a merged model: its own template, tokenizer and config)."""
    if is_model_folder(path):
        tk = load_tokenizer(path)
        if tk.chat_template is None:
            raise EvalsuiteError(f"{path}: no chat template (chat_template.jinja or tokenizer_config.json) to compare "
                                 "with")
        return SourceSide(path, tk, tk.chat_template, source_config(path))
    from evalsuite.export.merge import open_source

    src = open_source(path)
    if src.template is None:
        raise EvalsuiteError(f"{path}: no chat template (chat_template.jinja or tokenizer_config.json) to compare with")
    return SourceSide(path, load_tokenizer(src.tokenizer_dir), src.template, _config(Path(src.base_model)))


def is_model_folder(path: Path) -> bool:
    """A complete HF model folder (config, tokenizer), not an adapter: no adapter_config.json, no run manifest."""
    from evalsuite.rundir.contract import ADAPTER_CONFIG
    from evalsuite.rundir.manifest import MANIFEST_NAME

    return ((path / "config.json").is_file() and (path / "tokenizer.json").is_file()
            and not (path / ADAPTER_CONFIG).exists() and not (path / MANIFEST_NAME).exists())


def source_config(path: Path) -> dict[str, Any]:
    """The model's config.json: the folder's own, or the base model's of a run dir / adapter; {} when the base is
    not a local folder."""
    if is_model_folder(path):
        return _config(path)
    from evalsuite.export.merge import open_source

    return _config(Path(open_source(path).base_model))


def _config(folder: Path) -> dict[str, Any]:
    config = read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    return config if isinstance(config, dict) else {}


def open_gguf_side(file: GGUFFile, llama: LlamaCpp) -> GGUFSide:
    template = file.chat_template or CHATML
    return GGUFSide(file, llama, gguf_tokenizer(llama, file, template), template)


def static_findings(src: SourceSide, gg: GGUFSide, conversations: Sequence[Messages]) -> list[Finding]:
    return [*eos_findings(src, gg), *template_findings(src, gg, conversations),
            *token_findings(src, gg, conversations), *vocab_findings(src, gg)]


def _name(llama: LlamaCpp, tid: int | None) -> str:
    return "none" if tid is None else f"{llama.token_text(tid)!r} (id {tid})"


def eos_findings(src: SourceSide, gg: GGUFSide) -> list[Finding]:
    eot = end_of_turn_token(src.template, src.tk) or src.tk.eos_token
    if eot is None:
        return []
    tid = gg.tk.token_id(eot)
    stops = sorted(gg.llama.eog_ids)
    shown = ", ".join(repr(gg.llama.token_text(i)) for i in stops) or "none"
    fix = f"set it with {SET_META} --special-token eos {eot!r}, or fix generation_config.json before converting"
    if tid is None:
        return [Finding("gguf-eos-mismatch", f"training ends turns with {eot!r}, which is not one token in the GGUF; "
                                             f"it stops on {shown}")]
    if tid not in gg.llama.eog_ids:
        return [Finding("gguf-eos-mismatch", f"training ends turns with {eot!r} (id {tid}) but llama.cpp does not stop "
                                             f"on it (it stops on {shown}): answers run on into the next turn; {fix}")]
    declared = {gg.file.token_id("eos"), gg.file.token_id("eot"),
                *(gg.file.metadata.get("tokenizer.ggml.eos_token_ids") or [])}
    if tid not in declared:
        eos = _name(gg.llama, gg.file.token_id("eos"))
        return [Finding("gguf-eos-mismatch",
                        f"the GGUF declares eos {eos}, not the training end of turn {eot!r} (id {tid}); llama.cpp "
                        "still stops on it only because the name is on its built-in end-of-turn list, runtimes that "
                        f"stop on the declared eos run away (ollama issue 3759); {fix}")]
    return []


def _renders(template: str, tk: TokenizerInfo, messages: Messages) -> list[str]:
    """The prompt render and the render with an answer closing the turn (the end of turn differs there)."""
    answered = [*messages, {"role": "assistant", "content": "OK"}]
    variables = tk.template_variables()
    return [render(template, messages, add_generation_prompt=True, special_tokens=variables).text,
            render(template, answered, special_tokens=variables).text]


def template_findings(src: SourceSide, gg: GGUFSide, conversations: Sequence[Messages]) -> list[Finding]:
    if gg.file.chat_template is None:
        return [Finding("gguf-template-missing", "the GGUF has no tokenizer.chat_template: llama.cpp falls back to "
                                                 "ChatML, Ollama to its Modelfile TEMPLATE, whatever the model was "
                                                 f"trained with; embed it with {SET_META} --chat-template-file "
                                                 f"{src.path / 'chat_template.jinja'}")]
    differing, example = 0, ""
    for messages in conversations:
        try:
            train = _renders(src.template, src.tk, messages)
            served = _renders(gg.template, gg.tk, messages)
        except TemplateRaised as e:
            return [Finding("gguf-template-differs", f"the embedded template fails on a battery conversation: {e}")]
        if train != served:
            differing += 1
            pair = next((t, s) for t, s in zip(train, served, strict=True) if t != s)
            example = example or first_difference(pair[0], pair[1])
    if not differing:
        return []
    return [Finding("gguf-template-differs", f"{differing}/{len(conversations)} battery conversations render "
                                             "differently with the embedded template (training vs GGUF) "
                                             f"{example}; re-embed the training template with {SET_META} "
                                             "--chat-template-file")]


def token_findings(src: SourceSide, gg: GGUFSide, conversations: Sequence[Messages]) -> list[Finding]:
    """Training ids (HF tokenizer, no special tokens added: the template writes them) against what llama.cpp's chat
    path feeds the model for the same text (its own tokenizer, with the BOS/EOS it adds)."""
    out: list[Finding] = []
    bos = gg.llama.token_text(gg.llama.bos_id) if gg.llama.bos_id is not None else ""
    differing, example, double = 0, "", False
    for messages in conversations:
        text = render(src.template, messages, add_generation_prompt=True,
                      special_tokens=src.tk.template_variables()).text
        trained = src.tk.encode(text)
        plain = gg.llama.tokenize(text, False)
        served = plain if plain != trained else gg.llama.chat_prompt_ids(text)
        if served != trained:
            differing += 1
            example = example or _first_token_difference(src.tk, gg, trained, served)
        rendered = render(gg.template, messages, add_generation_prompt=True, special_tokens=gg.tk.template_variables())
        double = double or (gg.llama.add_bos and bool(bos) and rendered.text.startswith(bos))
    if double:
        out.append(Finding("gguf-double-bos",
                           f"llama.cpp adds BOS {_name(gg.llama, gg.llama.bos_id)} (tokenizer.ggml.add_bos_token is "
                           "true, or absent and true by default for this vocabulary) and the template writes it too: "
                           "llama-server drops the template's copy, but runtimes that tokenize the rendered prompt as "
                           "it is (llama-cpp-python, /completion) start every prompt with two (llama.cpp issue 7062); "
                           "set add_bos_token to what training did in tokenizer_config.json before converting, or "
                           "drop the BOS from the template"))
    if differing:
        out.append(Finding("gguf-tokenization-differs", f"{differing}/{len(conversations)} battery prompts tokenize "
                                                        f"differently in llama.cpp {example}; a pre-tokenizer, "
                                                        "normalizer or BOS/EOS setting the converter did not carry "
                                                        "over (llama.cpp issues 7476, 7881): convert with "
                                                        "`evalsuite export --gguf`"))
    return out


def _first_token_difference(tk: TokenizerInfo, gg: GGUFSide, trained: list[int], served: list[int]) -> str:
    at = next((i for i, (a, b) in enumerate(zip(trained, served)) if a != b), min(len(trained), len(served)))

    def show(ids: list[int], source: Any) -> str:
        return f"{source.decode(ids[at:at + 1])!r} (id {ids[at]})" if at < len(ids) else "end of prompt"

    return f"(first at token {at}: HF {show(trained, tk)} vs llama.cpp {show(served, gg.tk)})"


def _config_value(config: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None


def vocab_findings(src: SourceSide, gg: GGUFSide) -> list[Finding]:
    problems = _special_id_problems(src, gg)
    rows = src.config.get("vocab_size")
    if isinstance(rows, int) and rows != gg.llama.n_vocab:
        problems.insert(0, f"the GGUF has {gg.llama.n_vocab} tokens, config.json vocab_size is {rows} (llama.cpp "
                           "refuses such a file: token_embd.weight has wrong shape; `evalsuite export --gguf` pads the "
                           "tokenizer)")
    pairs = [("context length", gg.file.arch_value("context_length"), _config_value(src.config,
                                                                                     "max_position_embeddings")),
             ("RoPE base", gg.file.arch_value("rope.freq_base"), _config_value(src.config, "rope_parameters.rope_theta",
                                                                              "rope_theta")),
             ("RoPE scaling factor", gg.file.arch_value("rope.scaling.factor"),
              _config_value(src.config, "rope_parameters.factor", "rope_scaling.factor"))]
    for what, served, trained in pairs:
        if isinstance(trained, (int, float)) and (not isinstance(served, (int, float))
                                                  or not math.isclose(served, trained, rel_tol=1e-6)):
            problems.append(f"{what} is {served} in the GGUF, {trained} in config.json")
    if not problems:
        return []
    return [Finding("gguf-vocab-mismatch", "; ".join(problems) + "; re-convert from the merged folder")]


def _special_id_problems(src: SourceSide, gg: GGUFSide) -> list[str]:
    tokens = gg.file.tokens
    index = {t: i for i, t in reversed(list(enumerate(tokens)))}
    out = []
    for text, (tid, special) in sorted(src.tk.added_tokens.items(), key=lambda kv: kv[1][0]):
        if special and index.get(text) != tid:
            where = f"id {index[text]}" if text in index else "absent"
            out.append(f"special token {text!r} is id {tid} in the HF tokenizer, {where} in the GGUF")
    return out[:3]
