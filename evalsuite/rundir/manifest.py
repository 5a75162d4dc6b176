"""The run manifest: provenance and train metrics every backend writes into its run dir."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from evalsuite import __version__
from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_json, sha256_json

SCHEMA_VERSION = 1
MANIFEST_NAME = "evalsuite_manifest.json"
TRACKED_PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets", "tokenizers")
REQUIRED: dict[str, type] = {
    "schema_version": int, "kind": str, "created": str, "evalsuite_version": str, "base_model": str,
    "backend": dict, "versions": dict, "hashes": dict, "device": dict, "config": dict, "template": dict,
    "train": dict,
}
REQUIRED_TRAIN: dict[str, type | tuple[type, ...]] = {
    "global_step": int, "loss_curve": list, "runtime_s": (int, float), "peak_cpu_rss_mb": (int, float),
}
REQUIRED_HASHES = ("config", "data", "template", "tokenizer")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_state(cwd: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the repository the user trains from (None outside a git checkout)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_manifest(**fields: Any) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "kind": "evalsuite-run", "created": now_iso(),
            "evalsuite_version": __version__, **fields}


def validate_manifest(data: Any, where: str) -> dict[str, Any]:
    """Check the fields later stages rely on; the error lists every missing or mistyped one."""
    if not isinstance(data, dict):
        raise EvalsuiteError(f"{where}: expected a JSON object")
    problems = [f"{k}: expected {t.__name__}" for k, t in REQUIRED.items() if not isinstance(data.get(k), t)]
    if data.get("schema_version") not in (None, SCHEMA_VERSION) and isinstance(data.get("schema_version"), int):
        problems.append(f"schema_version: {data['schema_version']} is newer than this evalsuite ({SCHEMA_VERSION})")
    train = data["train"] if isinstance(data.get("train"), dict) else {}
    problems += [f"train.{k}: missing or mistyped" for k, t in REQUIRED_TRAIN.items()
                 if not isinstance(train.get(k), t)]
    hashes = data["hashes"] if isinstance(data.get("hashes"), dict) else {}
    problems += [f"hashes.{k}: missing" for k in REQUIRED_HASHES if not hashes.get(k)]
    if problems:
        raise EvalsuiteError(f"{where}: invalid manifest: " + "; ".join(problems))
    return data


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST_NAME
    data = read_json(path, missing=f"{run_dir}: no {MANIFEST_NAME} (not a run dir written by `evalsuite train`)")
    return validate_manifest(data, str(path))


def manifest_digest(manifest: dict[str, Any]) -> str:
    return sha256_json(manifest)
