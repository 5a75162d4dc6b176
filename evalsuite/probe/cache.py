"""The generation cache: re-running the probes on an unchanged adapter does not regenerate.

One JSON file per *column fingerprint*: the sha256 of the adapter weights and config, the base model (its config
and weight files), the template, the tokenizer, the stop ids, the device/dtype, the seed, the versions of
torch/transformers/peft/evalsuite and a digest of evalsuite's own generation code (:data:`GENERATION_MODULES`), so
an upgraded or edited evalsuite never serves generations its old code computed. Inside, entries are keyed by the
rendered prompt and the per-prompt generation settings (max new tokens, stop strings). Change any of those,
including the adapter file at the same path, and the key changes, so nothing stale is served. Generations the
stall guard stopped and not-run ones are never cached (they are not model results). Generations are treated as
independent of batch composition: left padding with an attention mask gives each prompt the same logits as alone (a
test checks batched == one-by-one on the tiny model).

Location: ``$EVALSUITE_CACHE/generations`` or ``~/.cache/evalsuite/generations``. Writes are atomic.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evalsuite.files import atomic_write_text, sha256_bytes, sha256_file, sha256_json
from evalsuite.probe.generation import Generation
from evalsuite.rundir.manifest import package_versions

CACHE_VERSION = 2  # bump when the cache file's format changes; code changes are covered by the digest below
# The modules whose source decides what a cached generation holds: prompt rendering (chat.template), tokenisation
# (chat.tokenizer, chat.tokenizer_compat), stop ids (chat.encode's end-of-turn token, probe.targets' union),
# decoding and finish-reason classification (probe.generation, probe.engines.decode, probe.engines.merged: an
# adapter folded into the weights, probe.engines.attention: decode-step attention on CPU), the engines
# (probe.engines.hf, probe.engines.vllm, probe.engines.gguf with the GGUF column's codec and llama.cpp wrapper,
# probe.engines.endpoint with the endpoint column's request and finish-reason mapping) and
# the key and file format themselves (probe.cache), and what is not a model result (probe.guard). Their digest is
# part of every column key. A module that starts deciding generation output belongs here; a test checks the list
# covers where those functions live.
GENERATION_MODULES = ("evalsuite.chat.template", "evalsuite.chat.tokenizer", "evalsuite.chat.tokenizer_compat",
                      "evalsuite.chat.encode", "evalsuite.probe.targets", "evalsuite.probe.generation",
                      "evalsuite.probe.engines.hf", "evalsuite.probe.engines.decode", "evalsuite.probe.engines.merged",
                      "evalsuite.probe.engines.attention", "evalsuite.probe.engines.workers",
                      "evalsuite.probe.engines.vllm",
                      "evalsuite.probe.engines.gguf", "evalsuite.probe.gguf_target", "evalsuite.gguf.llama",
                      "evalsuite.gguf.tokenizer", "evalsuite.probe.stall", "evalsuite.probe.engines.endpoint",
                      "evalsuite.probe.endpoint_target",
                      "evalsuite.probe.cache", "evalsuite.probe.guard")
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


def module_sources(modules: Iterable[str] = GENERATION_MODULES) -> dict[str, Path]:
    """Module name -> source file, found without importing the module (vLLM's engine imports nothing heavy, but
    there is no need to run any of them to read them)."""
    out = {}
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not Path(spec.origin).is_file():
            raise RuntimeError(f"generation cache: cannot find the source of {name} (moved? update GENERATION_MODULES)")
        out[name] = Path(spec.origin)
    return out


def code_digest(sources: dict[str, Path]) -> str:
    """One digest over the named sources' bytes: any edit to any of them changes it."""
    return sha256_json({name: sha256_bytes(path.read_bytes()) for name, path in sources.items()})


@functools.cache
def generation_code_digest() -> str:
    """:func:`code_digest` of :data:`GENERATION_MODULES`, computed once per process."""
    return code_digest(module_sources())


def column_key(parts: dict[str, Any], code: str | None = None) -> str:
    """The cache key of one column; ``code`` defaults to this process's :func:`generation_code_digest`."""
    versions = {k: v for k, v in package_versions().items() if k in ("python", "torch", "transformers", "peft")}
    from evalsuite import __version__

    return sha256_json({"cache_version": CACHE_VERSION, "versions": versions, "evalsuite": __version__,
                        "code": code or generation_code_digest(), **parts})


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
        # Only model results: a generation the stall guard stopped or the run did not make is never served again.
        keep = {k: asdict(g) for k, g in entries.items() if not g.time_capped and g.not_run is None}
        merged = {k: asdict(g) for k, g in self.load(key).items()}
        merged.update(keep)
        atomic_write_text(self._file(key), json.dumps({"cache_version": CACHE_VERSION, "entries": merged},
                                                      ensure_ascii=False))
