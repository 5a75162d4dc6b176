"""The run dir: the contract between trainers and every later stage (probe, gate, report read only this)."""

from __future__ import annotations

import json
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_json
from evalsuite.rundir.manifest import MANIFEST_NAME, read_manifest

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"
ADAPTER_CONFIG = "adapter_config.json"
GENERATION_CONFIG = "generation_config.json"
TEMPLATE_FILE = "chat_template.jinja"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
DEMO_MARKER = ".evalsuite-demo"  # in a folder `evalsuite demo` created: the demo may clear it and train there again
RUN_MARKER = ".evalsuite-run"  # in a folder `evalsuite train` created: --overwrite may clear it (and nothing else)
MARKERS = (DEMO_MARKER, RUN_MARKER)


@dataclass(frozen=True)
class RunDir:
    path: Path
    manifest: dict[str, Any]
    adapter_config: dict[str, Any]
    generation_config: dict[str, Any]

    @property
    def weights(self) -> Path:
        return self.path / ADAPTER_WEIGHTS

    @property
    def base_model(self) -> str:
        return str(self.manifest["base_model"])

    @property
    def chat_template(self) -> str | None:
        from evalsuite.chat.named import read_template_file

        f = self.path / TEMPLATE_FILE
        return read_template_file(f) if f.exists() else None

    @property
    def stop_token_ids(self) -> list[int]:
        eos = self.generation_config.get("eos_token_id")
        return [eos] if isinstance(eos, int) else list(eos or [])


def _json(path: Path) -> dict[str, Any]:
    data = read_json(path, missing=f"{path.parent}: missing {path.name} (incomplete run dir)")
    if not isinstance(data, dict):
        raise EvalsuiteError(f"{path}: expected a JSON object")
    return data


def open_run_dir(path: str | Path, allow_pickle: bool = False) -> RunDir:
    """Validate a run dir and return it; each problem is one clear error naming the file."""
    p = Path(path)
    if not p.is_dir():
        raise EvalsuiteError(f"{p}: no such run dir")
    if not (p / ADAPTER_WEIGHTS).exists():
        if (p / ADAPTER_PICKLE).exists() and not allow_pickle:
            raise EvalsuiteError(f"{p}: adapter weights are a pickle ({ADAPTER_PICKLE}), which can run code when "
                                 "loaded; pass --allow-pickle if you trust it")
        if not (p / ADAPTER_PICKLE).exists():
            raise EvalsuiteError(f"{p}: missing {ADAPTER_WEIGHTS} (incomplete run dir)")
    adapter_config = _json(p / ADAPTER_CONFIG)
    return RunDir(p, read_manifest(p), adapter_config, _json(p / GENERATION_CONFIG))


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file cannot be loaded, from its header alone (8-byte length + JSON + the data it promises),
    or None. Truncated and corrupt files fail here, in milliseconds, instead of deep inside a loader."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            size = path.stat().st_size
            if length > size - 8:
                return "header longer than the file"
            header = json.loads(f.read(length))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        if not ends:
            return "no tensors"
        if 8 + length + max(ends) > size:
            return "tensor data truncated"
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        return str(e) or type(e).__name__
    return None


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why a trainer checkpoint cannot be resumed from, or None; reads headers and zip directories only.

    The trainer writes trainer_state.json last, so a checkpoint killed mid-save (the Colab case, a full disk) lacks
    it. torch's ``.pt``/``.pth``/``.bin`` files are zip archives whose directory is at the end: a truncated one has
    none."""
    state = ckpt / "trainer_state.json"
    if not state.exists():
        return "incomplete (no trainer_state.json: the save did not finish)"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return "trainer_state.json is unreadable"
    for f in sorted(ckpt.iterdir()):
        if not f.is_file():
            continue
        if f.suffix in (".pt", ".pth", ".bin") and not zipfile.is_zipfile(f):
            return f"{f.name} is truncated or corrupt"
        if f.suffix == ".safetensors" and (why := safetensors_problem(f)) is not None:
            return f"{f.name} is truncated or corrupt ({why})"
    return None


def checkpoints(out_dir: Path) -> list[Path]:
    """Every ``checkpoint-N`` folder, newest first."""
    found = [(int(m.group(1)), c) for c in out_dir.glob("checkpoint-*") if (m := CHECKPOINT_RE.match(c.name))
             and c.is_dir()]
    return [c for _, c in sorted(found, reverse=True)]


def latest_checkpoint(out_dir: Path) -> Path | None:
    """Newest complete checkpoint (one with trainer_state.json; see :func:`checkpoint_problem`)."""
    return next((c for c in checkpoints(out_dir) if (c / "trainer_state.json").exists()), None)


def resumable_checkpoint(out_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that can be resumed from, and one line for each newer one skipped, and why."""
    skipped: list[str] = []
    for ckpt in checkpoints(out_dir):
        why = checkpoint_problem(ckpt)
        if why is None:
            return ckpt, skipped
        skipped.append(f"{ckpt}: {why}")
    return None, skipped


def is_run_dir_like(path: Path) -> bool:
    """True for a folder we may clear with --overwrite: an empty one, or one evalsuite made (its marker, written when
    training creates the folder, or a finished run's manifest). Checkpoints alone do not count: any Hugging Face
    trainer writes ``checkpoint-N`` folders, and someone else's run must never be deleted."""
    if not path.exists():
        return True
    entries = [p for p in path.iterdir() if p.name not in MARKERS]
    return not entries or any((path / m).is_file() for m in MARKERS) or (path / MANIFEST_NAME).exists()
