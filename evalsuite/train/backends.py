"""Trainer backends: a small Protocol and an explicit, lazy, loud registry.

Built-in backends are a literal name -> "module:attr" map; third parties add theirs through the
``evalsuite.backends`` entry-point group. Nothing is imported until a backend is asked for by name.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_json, special_file
from evalsuite.launch import is_main_process
from evalsuite.registry import Registry
from evalsuite.rundir.contract import (
    MARKERS,
    RUN_MARKER,
    checkpoints,
    is_run_dir_like,
    latest_checkpoint,
    resumable_checkpoint,
)
from evalsuite.rundir.manifest import MANIFEST_NAME

if TYPE_CHECKING:
    from evalsuite.config.load import Config

BUILTIN: dict[str, str] = {
    "trl": "evalsuite.trainers.trl_backend:TRLBackend",
    "axolotl": "evalsuite.trainers.axolotl_backend:AxolotlBackend",
    "torchtune": "evalsuite.trainers.torchtune_backend:TorchtuneBackend",
}
ENTRY_POINT_GROUP = "evalsuite.backends"
log = logging.getLogger("evalsuite.train")


@dataclass(frozen=True)
class TrainOptions:
    resume: bool = False
    overwrite: bool = False
    num_processes: int = 1  # > 1: data-parallel (accelerate for trl; the backend's own launcher otherwise)


@runtime_checkable
class TrainerBackend(Protocol):
    """Trains a LoRA/QLoRA adapter from a config and writes a complete run dir (see ``evalsuite.rundir.contract``)."""

    name: str

    def available(self) -> tuple[bool, str]:
        """(usable here?, one line: version, or how to install it)."""
        ...

    def train(self, config: Config, out_dir: Path, options: TrainOptions) -> Path:
        ...


BACKENDS = Registry("trainer backend", BUILTIN, ENTRY_POINT_GROUP)


def registry() -> dict[str, str]:
    """name -> "module:attr" for every known backend; a duplicate name is an error, not a silent override."""
    return BACKENDS.known()


def get_backend(name: str) -> TrainerBackend:
    obj = BACKENDS.load(name)
    backend = obj() if isinstance(obj, type) else obj
    if not isinstance(backend, TrainerBackend):
        raise EvalsuiteError(f"trainer backend {name!r} ({registry()[name]}) does not implement TrainerBackend")
    return backend


def prepare_out_dir(out_dir: Path, options: TrainOptions, config: Config | None = None) -> Path | None:
    """Refuse to clobber: a non-empty out dir needs --resume (continue) or --overwrite (start again). Every backend
    calls this first.

    Returns the checkpoint to resume from: the newest one that is complete and readable (a warning names each newer
    one skipped). With ``config``, a checkpoint trained with other settings (lora_r, ...) is refused, naming them.
    Under `accelerate launch` every rank looks the checkpoint up (read-only) but only rank 0 clears or creates the
    folder: two ranks deleting one folder would race."""
    _check_is_folder(out_dir)
    if options.resume:
        return _resume_from(out_dir, config)
    if not is_main_process():
        return None
    if out_dir.exists() and any(p.name not in MARKERS for p in out_dir.iterdir()):
        if not options.overwrite:
            if latest_checkpoint(out_dir) is None and checkpoints(out_dir):
                raise EvalsuiteError(f"{out_dir}: output dir holds only incomplete checkpoints (a save that did not "
                                     "finish: disk full?); pass --overwrite to start again")
            raise EvalsuiteError(f"{out_dir}: output dir is not empty; pass --resume to continue from its newest "
                                 "checkpoint or --overwrite to start again")
        if not is_run_dir_like(out_dir):
            raise EvalsuiteError(f"{out_dir}: refusing to --overwrite a folder that is not an evalsuite run dir (it "
                                 f"holds no {RUN_MARKER} or {MANIFEST_NAME}); remove it yourself or choose another")
        shutil.rmtree(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        marker = out_dir / RUN_MARKER
        if not marker.exists():
            marker.write_text("made by `evalsuite train`; `evalsuite train --overwrite` may clear this folder\n",
                              encoding="utf-8")
    except OSError as e:
        raise EvalsuiteError(f"{out_dir}: cannot create the output dir: {e.strerror or e}") from None
    return None


def _check_is_folder(out_dir: Path) -> None:
    for p in (out_dir, *out_dir.parents):
        if p.exists():
            if not p.is_dir():
                kind = special_file(p) or "a file"  # /dev/full, a FIFO: named as what they are
                what = f"is {kind}" if p == out_dir else f"is under {p}, which is {kind}"
                raise EvalsuiteError(f"{out_dir}: output dir {what}, not a folder")
            return


def _resume_from(out_dir: Path, config: Config | None) -> Path:
    ckpt, skipped = resumable_checkpoint(out_dir) if out_dir.exists() else (None, [])
    if ckpt is None:
        why = f" ({'; '.join(skipped)})" if skipped else ""
        raise EvalsuiteError(f"{out_dir}: --resume given but there is no checkpoint-* to resume from{why}; pass "
                             "--overwrite to start again")
    for line in skipped:
        warnings.warn(f"{line}; resuming from {ckpt.name} instead", stacklevel=3)
    if config is not None:
        changed = resume_mismatches(config, ckpt)
        if changed:
            raise EvalsuiteError(f"{config.path}: --resume: {ckpt} was trained with other settings: "
                                 f"{'; '.join(changed)}. Put them back to resume, or pass --overwrite to start "
                                 "again")
    log.info("resuming from %s", ckpt)
    return ckpt


SETTINGS_FILE = "evalsuite_settings.json"  # the config summary, written into each checkpoint by the trl backend
RESUME_MAY_CHANGE = frozenset({"max_steps", "num_epochs"})  # extending a run is what resuming is for
# peft's adapter_config.json key -> our config key (the record for checkpoints written without SETTINGS_FILE).
_PEFT_KEYS = {"r": "lora_r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
              "modules_to_save": "lora_modules_to_save"}


def resume_mismatches(config: Config, ckpt: Path) -> list[str]:
    """One ``key: checkpoint X, config Y (file:line)`` per setting the checkpoint was trained with differently."""
    saved: dict[str, Any] = {}
    record = ckpt / SETTINGS_FILE
    if record.is_file():
        data = read_json(record)
        saved = {k: v for k, v in data.items() if k not in RESUME_MAY_CHANGE} if isinstance(data, dict) else {}
    elif (ckpt / "adapter_config.json").is_file():
        data = read_json(ckpt / "adapter_config.json")
        if isinstance(data, dict):
            saved = {ours: data.get(theirs) for theirs, ours in _PEFT_KEYS.items()}
    out = []
    for key, then in saved.items():
        now = json.loads(json.dumps(getattr(config, key, None), default=str))
        if not _same(then, now):
            line = config.line_of(key)
            out.append(f"{key}: checkpoint {then!r}, config {now!r}" + (f" (line {line})" if line else ""))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, list) or isinstance(b, list):
        return sorted(map(str, a or [])) == sorted(map(str, b or []))
    return bool(a == b)
