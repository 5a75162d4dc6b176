"""The generation cache: re-running the probes on an unchanged adapter does not regenerate.

One JSON file per *column fingerprint*: the sha256 of the adapter weights and config, the base model (its config
and weight files), the template, the tokenizer, the stop ids, the device/dtype, the seed and the versions of
torch/transformers/peft/evalsuite. Inside, entries are keyed by the rendered prompt and the per-prompt generation
settings (max new tokens, stop strings). Change any of those, including the adapter file at the same path, and the
key changes, so nothing stale is served. Generations cut by the wall-time cap are never cached (they depend on the
machine's load). Generations are treated as independent of batch composition: left padding with an attention mask
gives each prompt the same logits as alone (a test checks batched == one-by-one on the tiny model).

Location: ``$EVALSUITE_CACHE/generations`` or ``~/.cache/evalsuite/generations``. Writes are atomic.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evalsuite.files import atomic_write_text, sha256_file, sha256_json
from evalsuite.probe.generation import Generation
from evalsuite.rundir.manifest import package_versions

CACHE_VERSION = 2  # bump when decoding changes (2: evalsuite.probe.engines.decode instead of generate())
LARGE_FILE = 256 * 2**20  # weight files above this are fingerprinted by size + mtime instead of content


def cache_root(explicit: Path | None = None) -> Path:
    base = explicit or Path(os.environ.get("EVALSUITE_CACHE") or Path.home() / ".cache" / "evalsuite").expanduser()
    return base / "generations"


def base_fingerprint(base_model: str, revision: str | None = None) -> dict[str, Any]:
    """Identify the base: file hashes for a local folder, the id and revision for a hub model."""
    path = Path(base_model)
    if not path.is_dir():
        return {"id": base_model, "revision": revision}
    files: dict[str, Any] = {}
    for f in sorted(path.iterdir()):
        if f.suffix in (".json", ".safetensors", ".bin") and f.is_file():
            st = f.stat()
            files[f.name] = sha256_file(f) if st.st_size <= LARGE_FILE else [st.st_size, st.st_mtime_ns]
    return {"path": str(path.resolve()), "files": files}


def column_key(parts: dict[str, Any]) -> str:
    versions = {k: v for k, v in package_versions().items() if k in ("python", "torch", "transformers", "peft")}
    from evalsuite import __version__

    return sha256_json({"cache_version": CACHE_VERSION, "versions": versions, "evalsuite": __version__, **parts})


def prompt_key(prompt_text: str, max_new_tokens: int, stop_strings: tuple[str, ...]) -> str:
    return sha256_json([prompt_text, max_new_tokens, list(stop_strings)])


class GenerationCache:
    """Load/save the entries of one column; ``enabled=False`` turns it into a no-op."""

    def __init__(self, root: Path | None = None, enabled: bool = True) -> None:
        self.root = cache_root(root)
        self.enabled = enabled

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def load(self, key: str) -> dict[str, Generation]:
        if not self.enabled:
            return {}
        try:
            data = json.loads(self._file(key).read_text(encoding="utf-8"))
            return {k: Generation(**v) for k, v in data["entries"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # missing or unreadable: regenerate (a cache is never a source of errors)

    def save(self, key: str, entries: dict[str, Generation]) -> None:
        if not self.enabled or not entries:
            return
        keep = {k: asdict(g) for k, g in entries.items() if not g.time_capped}
        merged = {k: asdict(g) for k, g in self.load(key).items()}
        merged.update(keep)
        atomic_write_text(self._file(key), json.dumps({"cache_version": CACHE_VERSION, "entries": merged},
                                                      ensure_ascii=False))
