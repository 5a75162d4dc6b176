"""Hub ids, resolved from the local Hugging Face cache only: probing never downloads.

A base model or an adapter named by a hub id (``meta-llama/Llama-3.2-1B``) is looked up offline in the cache that
``huggingface-cli download`` / ``hf download`` fill (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub``); its snapshot folder is then used like any local folder, so loading, fingerprinting
and the shape check all work on files. A missing id is one error naming it and the cache searched.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from evalsuite.errors import EvalsuiteError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(value: str) -> bool:
    """``org/name`` with hub characters, and not spelled like a path (``./x``, ``/x``, ``~/x``)."""
    return bool(_HUB_ID.match(value)) and not value.startswith((".", "/", "~")) and ".." not in value


def hub_cache_dir() -> Path:
    """The hub cache, read from the environment at call time (the library reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "huggingface") / "hub"


def cached_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of ``repo_id`` (its ``main`` revision), or None when the cache lacks it."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    try:
        path = snapshot_download(repo_id, cache_dir=hub_cache_dir(), local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        return None
    return Path(str(path)) if Path(str(path)).is_dir() else None


@dataclass(frozen=True)
class BaseRef:
    """A base model as the user named it (``name``: a folder or a hub id) and the folder evalsuite loads."""

    name: str
    folder: Path
    hub_id: str | None = None

    @property
    def revision(self) -> str | None:
        return self.folder.name if self.hub_id else None  # snapshot folders are named by commit


def resolve_base(ref: str, where: str, declared_in: str) -> BaseRef:
    """A folder, or a hub id found in the local cache; anything else is one error naming the id and the source."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return BaseRef(str(path.resolve()), path.resolve())
    if looks_like_hub_id(ref):
        snapshot = cached_snapshot(ref)
        if snapshot is not None:
            return BaseRef(ref, snapshot, ref)
        raise EvalsuiteError(f"{where}: base model {ref!r} (from {declared_in}) is not a folder and not in the local "
                             f"Hugging Face cache ({hub_cache_dir()}); evalsuite loads models offline: download it "
                             f"first (hf download {ref}) or pass --base-model PATH")
    raise EvalsuiteError(f"{where}: base model {ref} (from {declared_in}): no such folder; pass --base-model PATH")
