"""``evalsuite export SOURCE --merged DIR``: fold a LoRA adapter into its base and write a complete HF model folder.

SOURCE is a run dir (``evalsuite train``'s) or a plain PEFT adapter folder (``adapter_config.json`` names its base).
The folder gets the merged weights (safetensors, the base's dtype), ``config.json``, the tokenizer the adapter was
trained with, the training chat template as ``chat_template.jinja`` (and nowhere else: llama.cpp's converter prefers
a ``chat_template`` key in ``tokenizer_config.json`` over the jinja file, so a stale key there would embed the
base's template in a GGUF), the run dir's ``generation_config.json`` (its eos ids include the end-of-turn token) and
``evalsuite_export.json`` saying where it came from.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.files import (
    atomic_write_text,
    check_output_path,
    read_json,
    resolve_path,
    sha256_file,
    special_file,
    write_failure,
)
from evalsuite.rundir.contract import ADAPTER_CONFIG, ADAPTER_WEIGHTS, GENERATION_CONFIG, TEMPLATE_FILE, open_run_dir
from evalsuite.rundir.manifest import MANIFEST_NAME, manifest_digest, now_iso

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
PROVENANCE = "evalsuite_export.json"


@dataclass(frozen=True)
class ExportSource:
    adapter: Path
    base_model: str
    tokenizer_dir: Path  # where tokenizer.json is: the run dir, else the adapter folder or the base
    template: str | None
    generation_config: dict[str, Any]
    manifest: dict[str, Any] | None


def open_source(path: Path) -> ExportSource:
    """A run dir, or a plain PEFT adapter folder; each problem is one error naming the file."""
    if (path / MANIFEST_NAME).is_file():
        rd = open_run_dir(path)
        if not rd.weights.is_file():
            raise EvalsuiteError(f"{path}: export reads {ADAPTER_WEIGHTS}; this run dir has pickle weights only")
        from evalsuite.chat.tokenizer import load_tokenizer

        template = rd.chat_template or load_tokenizer(path).chat_template
        return ExportSource(path, rd.base_model, path, template, rd.generation_config, rd.manifest)
    if not (path / ADAPTER_CONFIG).is_file():
        raise EvalsuiteError(f"{path}: not a run dir or a PEFT adapter folder "
                             f"(no {MANIFEST_NAME}, no {ADAPTER_CONFIG})")
    if not (path / ADAPTER_WEIGHTS).is_file():
        raise EvalsuiteError(f"{path}: missing {ADAPTER_WEIGHTS}")
    config = read_json(path / ADAPTER_CONFIG)
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(base, str) or not base:
        raise EvalsuiteError(f"{path / ADAPTER_CONFIG}: base_model_name_or_path: missing; cannot tell the base model")
    tok_dir = path if (path / "tokenizer.json").is_file() else Path(base)
    from evalsuite.chat.tokenizer import load_tokenizer

    template = load_tokenizer(tok_dir).chat_template if (tok_dir / "tokenizer.json").is_file() else None
    gen = path / GENERATION_CONFIG if (path / GENERATION_CONFIG).is_file() else Path(base) / GENERATION_CONFIG
    generation = read_json(gen) if gen.is_file() else {}
    return ExportSource(path, base, tok_dir, template, generation if isinstance(generation, dict) else {}, None)


def read_folders(source: ExportSource) -> list[Path]:
    """The folders an export reads: the adapter (run dir), its tokenizer's folder and a local base model folder."""
    folders = [source.adapter, source.tokenizer_dir]
    if Path(source.base_model).is_dir():
        folders.append(Path(source.base_model))
    return folders


def check_output_dir(out: Path, overwrite: bool, source: ExportSource) -> None:
    """Refuse, before anything is written, a --merged folder that would lose or mix up someone's files: a file or
    special file, one of the folders the export reads (or a folder inside or around one), a folder holding other
    things (unless --overwrite, and then only a folder an earlier export wrote: it holds ``evalsuite_export.json``),
    or a place we cannot create a folder in."""
    what = "--merged folder"
    target = resolve_path(out, what)
    special = special_file(out)
    if special or (out.exists() and not out.is_dir()):
        raise EvalsuiteError(f"{out}: {what}: exists and is {special or 'a file'}, not a folder")
    for folder in read_folders(source):
        read = resolve_path(folder, "folder")
        if target == read or read in target.parents:
            raise EvalsuiteError(f"{out}: {what} is {'' if target == read else 'inside '}{folder}, which this "
                                 "export reads; refusing to write there (choose a new folder)")
        if target in read.parents:
            raise EvalsuiteError(f"{out}: {what} holds {folder}, which this export reads; refusing to write model "
                                 "files into it (choose a new folder)")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise EvalsuiteError(f"{out}: folder is not empty; pass --overwrite to replace what export writes there")
        if not made_by_export(out):
            raise EvalsuiteError(f"{out}: --overwrite replaces only a folder `evalsuite export --merged` wrote (it "
                                 f"holds {PROVENANCE}); this one holds other things, so it is left as it is")
    check_output_path(target.parent / f".{target.name}.probe", f"{what}'s parent")


def made_by_export(folder: Path) -> bool:
    """Whether ``folder`` holds the provenance record an export writes last (so it is one, and complete)."""
    try:
        record = json.loads((folder / PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("kind") == "evalsuite-export"


def merge(source: ExportSource, out: Path) -> Path:
    """Write the merged model folder ``out``: built in a hidden folder beside it and renamed into place when whole,
    so a failure (a full disk) leaves no half-written folder that looks like a model, and an old export that
    --overwrite replaces stays until the new one is complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _write_merged(source, staging)
        _swap_in(staging, out)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        failed = write_failure(e)
        if failed:
            raise EvalsuiteError(f"{out}: export failed, nothing was written there: {failed}") from None
        raise
    return out


def _swap_in(staging: Path, out: Path) -> None:
    """Rename the finished ``staging`` to ``out``; an existing ``out`` (empty, or an earlier export) goes last."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_merged(source: ExportSource, out: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from evalsuite.probe.engines.hf import quiet_libraries

    with quiet_libraries():
        try:
            base = AutoModelForCausalLM.from_pretrained(source.base_model, dtype="auto", use_safetensors=True)
        except (OSError, ValueError) as e:
            raise EvalsuiteError(f"{source.base_model}: cannot load the base model: {_first_line(e)}") from None
        try:
            model = PeftModel.from_pretrained(base, str(source.adapter)).merge_and_unload()
        except (RuntimeError, ValueError, KeyError, OSError) as e:
            raise EvalsuiteError(f"{source.adapter}: adapter does not fit the base {source.base_model}: "
                                 f"{_first_line(e)}") from None
        with torch.no_grad():
            model.save_pretrained(out, safe_serialization=True)
    _write_tokenizer(source, out)
    atomic_write_text(out / GENERATION_CONFIG, json.dumps(source.generation_config, indent=2) + "\n")
    _write_provenance(source, out)  # last: its presence says the folder is complete


def _write_tokenizer(source: ExportSource, out: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source.tokenizer_dir / name).is_file():
            shutil.copyfile(source.tokenizer_dir / name, out / name)
    config_path = out / "tokenizer_config.json"
    if config_path.is_file():
        config = read_json(config_path)
        if isinstance(config, dict) and "chat_template" in config:
            del config["chat_template"]
            atomic_write_text(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (out / "chat_template.json").unlink(missing_ok=True)
    if source.template is not None:
        atomic_write_text(out / TEMPLATE_FILE, source.template)


def _write_provenance(source: ExportSource, out: Path) -> None:
    record = {"kind": "evalsuite-export", "created": now_iso(), "source": str(source.adapter.resolve()),
              "base_model": source.base_model, "adapter_sha256": sha256_file(source.adapter / ADAPTER_WEIGHTS),
              "manifest_digest": manifest_digest(source.manifest) if source.manifest else None}
    atomic_write_text(out / PROVENANCE, json.dumps(record, indent=2) + "\n")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return " ".join(text.splitlines()[0].split())[:300] if text else type(e).__name__
