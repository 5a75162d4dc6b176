"""Baselines: a results file frozen as the reference that regression gates compare against.

A baseline is an ordinary results file (same schema, loadable by gates and reports) with a
``baseline`` block saying where and when it was recorded: the source file and its hash, the git
commit, and the manifest digest of every adapter, so a reader can tell which training run the
reference numbers came from. Recording refuses a git tree with uncommitted changes to tracked
files (the numbers would not be reproducible from the commit) unless forced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_json, sha256_file
from evalsuite.results.io import load_results, write_results
from evalsuite.rundir.manifest import git_state, now_iso


def baseline_block(results_path: Path, digests: dict[str, str | None], git: dict[str, Any] | None,
                   forced: bool) -> dict[str, Any]:
    return {
        "recorded": now_iso(),
        "source": str(results_path),
        "source_sha256": sha256_file(results_path),
        "git": git,
        "forced": forced,
        "manifest_digests": digests,
    }


def record_baseline(results_path: Path, out_path: Path, force: bool = False, cwd: Path | None = None) -> Path:
    """Validate ``results_path`` and write it as a baseline to ``out_path`` (atomically).

    Raises ``EvalsuiteError`` when the git tree at ``cwd`` has uncommitted changes to tracked files
    and ``force`` is false; nothing is written then.
    """
    results = load_results(results_path)
    git = git_state(cwd or Path.cwd())
    if git is not None and git.get("dirty") and not force:
        raise EvalsuiteError(
            f"{out_path}: refusing to record a baseline from a dirty git tree ({cwd or Path.cwd()} has "
            "uncommitted changes to tracked files, so the commit does not reproduce these numbers); "
            "commit first or pass --force")
    digests = {a.name: a.manifest_digest for a in results.adapters}
    results.baseline = baseline_block(results_path, digests, git, forced=force and bool(git and git["dirty"]))
    write_results(results, out_path)
    return out_path


def describe_baseline(path: Path) -> str:
    """One line for humans: which digests, which commit, when."""
    data = read_json(path, "baseline").get("baseline") or {}
    git = data.get("git") or {}
    commit = (git.get("commit") or "no git")[:12] + (" (dirty, forced)" if git.get("dirty") else "")
    digests = ", ".join(f"{k}={(v or 'none')[:19]}" for k, v in (data.get("manifest_digests") or {}).items())
    return f"baseline {path} from {data.get('source')} at {commit}; manifests: {digests or 'none'}"
