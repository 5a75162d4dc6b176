"""Trainer backends: a small Protocol and an explicit, lazy, loud registry.

Built-in backends are a literal name -> "module:attr" map; third parties add theirs through the
``evalsuite.backends`` entry-point group. Nothing is imported until a backend is asked for by name.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from evalsuite.errors import EvalsuiteError
from evalsuite.launch import is_main_process
from evalsuite.registry import Registry
from evalsuite.rundir.contract import is_run_dir_like, latest_checkpoint

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


def prepare_out_dir(out_dir: Path, options: TrainOptions) -> Path | None:
    """Refuse to clobber: a non-empty out dir needs --resume (continue) or --overwrite (start again). Every backend
    calls this first.

    Returns the checkpoint to resume from. Under `accelerate launch` every rank looks the checkpoint up (read-only)
    but only rank 0 clears or creates the folder: two ranks deleting one folder would race."""
    if options.resume:
        ckpt = latest_checkpoint(out_dir) if out_dir.exists() else None
        if ckpt is None:
            raise EvalsuiteError(f"{out_dir}: --resume given but there is no checkpoint-* to resume from")
        log.info("resuming from %s", ckpt)
        return ckpt
    if not is_main_process():
        return None
    if out_dir.exists() and any(out_dir.iterdir()):
        if not options.overwrite:
            raise EvalsuiteError(f"{out_dir}: output dir is not empty; pass --resume to continue from its newest "
                                 "checkpoint or --overwrite to start again")
        if not is_run_dir_like(out_dir):
            raise EvalsuiteError(f"{out_dir}: refusing to --overwrite a folder that is not an evalsuite run dir")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return None
