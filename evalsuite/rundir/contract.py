"""The run dir: the contract between trainers and every later stage (probe, gate, report read only this)."""

from __future__ import annotations

import re
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
        f = self.path / TEMPLATE_FILE
        return f.read_text(encoding="utf-8") if f.exists() else None

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


def latest_checkpoint(out_dir: Path) -> Path | None:
    """Newest complete checkpoint. The trainer writes trainer_state.json last, so a checkpoint killed mid-save
    (the Colab case) lacks it and is skipped rather than resumed from."""
    steps = [(int(m.group(1)), c) for c in out_dir.glob("checkpoint-*")
             if (m := CHECKPOINT_RE.match(c.name)) and (c / "trainer_state.json").exists()]
    return max(steps)[1] if steps else None


def is_run_dir_like(path: Path) -> bool:
    """True for a folder we may clear with --overwrite: one we wrote (manifest or checkpoints) or an empty one."""
    if not path.exists():
        return True
    entries = list(path.iterdir())
    return not entries or (path / MANIFEST_NAME).exists() or latest_checkpoint(path) is not None
