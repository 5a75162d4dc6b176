"""What the lint needs to know, gathered from a config file or from command-line options.

Everything here mirrors the trainer: the same tokenizer files (``tokenizer_config`` or ``base_model``), the same
``special_tokens`` overrides (added to the vocabulary when missing), pad = eos when the tokenizer has no pad token
(as ``trainers/common.py`` does), the same template resolution, datasets, ``sequence_len``, ``train_on_inputs`` and
``sample_packing``. What a server will stop on comes from ``generation_config.json`` (the base model's, or
``--generation-config``) plus the tokenizer's EOS. The lint never downloads: a hub id must already be in the local
Hugging Face cache.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.chat.encode import EncodeOptions
from evalsuite.chat.tokenizer import TokenizerInfo, load_tokenizer
from evalsuite.config.datasets import CustomFormat, DatasetSpec
from evalsuite.config.rows import Sample, load_samples, read_records
from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_json

COLLATORS = ("trl", "mask-pad-id")


@dataclass
class LintSetup:
    tk: TokenizerInfo
    template: str | None
    samples: list[Sample]
    source: str
    train_on_inputs: bool = False
    max_length: int | None = None
    train_on_reasoning: bool = True
    packing: bool = False
    collator: str = "trl"
    stop_ids: set[int] = field(default_factory=set)
    stop_source: str = "the tokenizer's eos_token"
    model_dir: Path | None = None
    model_vocab_size: int | None = None
    modules_to_save: list[str] = field(default_factory=list)
    ignore: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    @property
    def pad_id(self) -> int | None:
        return self.tk.token_id(self.tk.pad_token)

    def encode_options(self) -> EncodeOptions:
        """The trainer's encoding options for this set-up."""
        return EncodeOptions(self.train_on_inputs, self.max_length, self.train_on_reasoning)


def hub_snapshot(repo_id: str) -> Path | None:
    """The local Hugging Face cache snapshot of ``repo_id`` (refs/main), without importing huggingface_hub."""
    if repo_id.count("/") != 1:
        return None
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    cache = Path(os.environ.get("HF_HUB_CACHE") or Path(home) / "hub")
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text(encoding="utf-8").strip()
        if snap.is_dir():
            return snap
    snaps = sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
    return snaps[-1] if snaps else None


def local_dir(value: str, base: Path, where: str, key: str) -> Path:
    p = Path(value).expanduser()
    for candidate in (p, base / p):
        if candidate.is_dir():
            return candidate
    snap = hub_snapshot(value)
    if snap is not None:
        return snap
    raise EvalsuiteError(f"{where}: {key}: {value!r} is not a local directory and not in the Hugging Face cache "
                         "(the lint never downloads; point it at a local copy)")


def read_stop_ids(path: Path) -> set[int]:
    data = read_json(path, "generation config")
    eos = data.get("eos_token_id") if isinstance(data, dict) else None
    ids = eos if isinstance(eos, list) else [eos]
    return {i for i in ids if isinstance(i, int) and not isinstance(i, bool)}


def model_vocab_size(model_dir: Path | None) -> int | None:
    if model_dir is None or not (model_dir / "config.json").is_file():
        return None
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    size = cfg.get("vocab_size") or (cfg.get("text_config") or {}).get("vocab_size")
    return size if isinstance(size, int) else None


def finish_tokenizer(tk: TokenizerInfo, overrides: dict[str, str], notes: list[str]) -> TokenizerInfo:
    if overrides:
        tk = tk.with_special(overrides)
    if tk.pad_token is None and tk.eos_token is not None:
        tk = tk.with_special({"pad_token": tk.eos_token})
        notes.append(f"the tokenizer has no pad token; the trainer pads with eos ({tk.eos_token})")
    return tk


def _stops(setup: LintSetup, gen_config: Path | None) -> None:
    eos = setup.tk.token_id(setup.tk.eos_token)
    setup.stop_ids = {eos} if eos is not None else set()
    if gen_config is not None:
        setup.stop_ids |= read_stop_ids(gen_config)
        setup.stop_source = f"{gen_config} eos_token_id + the tokenizer's eos_token"


def from_config(path: str | Path, collator: str | None = None, generation_config: str | None = None) -> LintSetup:
    from evalsuite.chat.template import resolve_template
    from evalsuite.config.load import load_config, resolve_path

    config = load_config(path)
    base = config.path.parent
    model_dir: Path | None
    try:
        model_dir = local_dir(config.base_model, base, config.where("base_model"), "base_model")
    except EvalsuiteError:
        if not config.tokenizer_config:
            raise
        model_dir = None
    tok_dir = local_dir(config.tokenizer_config, base, config.where("tokenizer_config"), "tokenizer_config") \
        if config.tokenizer_config else model_dir
    assert tok_dir is not None
    notes: list[str] = []
    tk = finish_tokenizer(load_tokenizer(tok_dir), dict(config.special_tokens or {}), notes)
    jinja = config.chat_template_jinja
    if jinja and "{" not in jinja and resolve_path(config, jinja).is_file():
        jinja = str(resolve_path(config, jinja))
    template = resolve_template(config.chat_template, jinja, tk.chat_template, config.where("chat_template"))
    if not config.datasets:
        raise EvalsuiteError(f"{config.path}: datasets: at least one dataset is needed to lint")
    samples = [s for spec in config.datasets for s in load_samples(spec, base_dir=base)]
    setup = LintSetup(tk=tk, template=template, samples=samples, source=str(config.path),
                      train_on_inputs=bool(config.train_on_inputs), max_length=config.sequence_len,
                      train_on_reasoning=bool(config.train_on_reasoning), packing=bool(config.sample_packing),
                      collator=collator or config.lint_collator,
                      model_dir=model_dir, model_vocab_size=model_vocab_size(model_dir),
                      modules_to_save=list(config.lora_modules_to_save or []), ignore=set(config.ignore or []),
                      notes=notes)
    gen = model_dir / "generation_config.json" if model_dir is not None else None
    if generation_config is not None:
        gen = Path(generation_config).expanduser()
        if not gen.is_file():
            raise EvalsuiteError(f"{gen}: --generation-config: no such file")
    _stops(setup, gen if gen is not None and gen.is_file() else None)
    return setup


def detect_spec(path: Path) -> DatasetSpec:
    """Guess the dataset format of a --data file from its first record."""
    first: Any = None
    for row, rec in read_records(path):
        first = (row, rec)
        break
    if first is None:
        raise EvalsuiteError(f"{path}: no rows")
    row, rec = first
    keys = set(rec) if isinstance(rec, dict) else set()
    if "messages" in keys:
        return DatasetSpec(path=str(path), type="chat_template")
    if "conversations" in keys:
        return DatasetSpec(path=str(path), type="sharegpt")
    if {"instruction", "output"} <= keys:
        return DatasetSpec(path=str(path), type="alpaca")
    if {"prompt", "completion"} <= keys:
        fmt = CustomFormat(format="{instruction}", field_instruction="prompt", field_output="completion")
        return DatasetSpec(path=str(path), type="custom", custom=fmt)
    if "text" in keys:
        return DatasetSpec(path=str(path), type="completion")
    raise EvalsuiteError(f"{path}:{row}: cannot tell the dataset format from its keys {sorted(keys)}; expected "
                         "messages, conversations, instruction/output, prompt/completion or text (or use a config)")


def from_options(tokenizer: str, data: list[str], *, chat_template: str | None = None,
                 generation_config: str | None = None, max_length: int | None = None,
                 train_on_inputs: bool = False, train_on_reasoning: bool = True, packing: bool = False,
                 pad_token: str | None = None,
                 eos_token: str | None = None, collator: str | None = None, base_model: str | None = None
                 ) -> LintSetup:
    cwd = Path.cwd()
    notes: list[str] = []
    overrides = {k: v for k, v in (("pad_token", pad_token), ("eos_token", eos_token)) if v}
    tk = finish_tokenizer(load_tokenizer(local_dir(tokenizer, cwd, "--tokenizer", "--tokenizer")), overrides, notes)
    template = tk.chat_template
    if chat_template is not None:
        from evalsuite.chat.template import read_template_file

        template = read_template_file(Path(chat_template).expanduser(), "--chat-template")
    samples: list[Sample] = []
    for d in data:
        samples += load_samples(detect_spec(Path(d).expanduser()))
    model_dir = local_dir(base_model, cwd, "--base-model", "--base-model") if base_model else None
    setup = LintSetup(tk=tk, template=template, samples=samples, source=", ".join(data),
                      train_on_inputs=train_on_inputs, max_length=max_length, train_on_reasoning=train_on_reasoning,
                      packing=packing,
                      collator=collator or "trl", model_dir=model_dir, model_vocab_size=model_vocab_size(model_dir),
                      notes=notes)
    gen = Path(generation_config).expanduser() if generation_config else None
    if gen is not None and not gen.is_file():
        raise EvalsuiteError(f"{gen}: --generation-config: no such file")
    if gen is None and model_dir is not None and (model_dir / "generation_config.json").is_file():
        gen = model_dir / "generation_config.json"
    _stops(setup, gen)
    return setup
