"""The local Hugging Face hub cache, read without importing huggingface_hub: where a model or dataset repository's
files already are (the lint never downloads)."""

from __future__ import annotations

import os
from pathlib import Path


def hub_cache() -> Path:
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(os.environ.get("HF_HUB_CACHE") or Path(home) / "hub")


def cached_snapshot(repo_id: str, kind: str = "models") -> Path | None:
    """The cached snapshot folder of ``repo_id`` (``kind``: models or datasets) at refs/main, else the newest one;
    None when the repository is not in the cache."""
    if repo_id.count("/") != 1:
        return None
    repo = hub_cache() / (f"{kind}--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text(encoding="utf-8").strip()
        if snap.is_dir():
            return snap
    snaps = sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
    return snaps[-1] if snaps else None
