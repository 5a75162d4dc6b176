"""Trainer backends: a small Protocol and an explicit, lazy, loud registry.

Built-in backends are a literal name -> "module:attr" map; third parties add theirs through the
``evalsuite.backends`` entry-point group. Nothing is imported until a backend is asked for by name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from evalsuite.errors import EvalsuiteError

if TYPE_CHECKING:
    from evalsuite.config.load import Config

BUILTIN: dict[str, str] = {
    "trl": "evalsuite.trainers.trl_backend:TRLBackend",
    "axolotl": "evalsuite.trainers.axolotl_backend:AxolotlBackend",
    "torchtune": "evalsuite.trainers.torchtune_backend:TorchtuneBackend",
}
ENTRY_POINT_GROUP = "evalsuite.backends"


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


def registry() -> dict[str, str]:
    """name -> "module:attr" for every known backend; a duplicate name is an error, not a silent override."""
    names = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in names and names[ep.name] != ep.value:
            raise EvalsuiteError(f"trainer backend {ep.name!r} registered twice: {names[ep.name]} and {ep.value}")
        names[ep.name] = ep.value
    return names


def get_backend(name: str) -> TrainerBackend:
    known = registry()
    if name not in known:
        raise EvalsuiteError(f"unknown trainer backend {name!r}; known: {', '.join(sorted(known))}")
    module_name, _, attr = known[name].partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise EvalsuiteError(f"trainer backend {name!r} ({known[name]}) cannot be loaded: {e}") from None
    backend = obj() if isinstance(obj, type) else obj
    if not isinstance(backend, TrainerBackend):
        raise EvalsuiteError(f"trainer backend {name!r} ({known[name]}) does not implement TrainerBackend")
    return backend
