"""The `evalsuite-lint` pre-commit hook, run by pre-commit itself (`pre-commit try-repo`) on a temporary git repo:
pre-commit installs this repository's package into a fresh virtualenv from its light dependencies (no torch), and
the hook passes a clean config, fails a broken one with the rule id in the output, and lints the configs that read a
changed data file or template."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROKEN_TEMPLATE = ROOT / "tests" / "lint_data" / "chatml_always_open.jinja"
# What pip prints when it cannot reach a package index: then pre-commit cannot create environments here.
NO_INDEX = ("No matching distribution found", "Failed to establish a new connection", "Could not fetch URL",
            "Temporary failure in name resolution")

pytestmark = pytest.mark.slow


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=evalsuite-test", "-c", "user.email=test@example.invalid", *args],
                          cwd=cwd, capture_output=True, text=True, check=True, timeout=120).stdout


def snapshot_repo(dest: Path) -> Path:
    """This working tree (committed, staged and untracked-but-not-ignored files) as a one-commit git repo: try-repo
    needs a repository whose commit holds .pre-commit-hooks.yaml."""
    try:
        listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot snapshot the hook repository")
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git("init", "-q", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "-q", "-m", "snapshot", cwd=dest)
    return dest


def user_repo(dest: Path) -> Path:
    """A project with a clean and a broken training config on the same data (the committed tiny base: tokenizer,
    config.json and safetensors weights, so the embedding check runs too)."""
    (dest / "data").mkdir(parents=True)
    rows = (ROOT / "fixtures" / "data" / "uppercase_echo_train.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    (dest / "data" / "train.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    shutil.copy(BROKEN_TEMPLATE, dest / "chat.jinja")
    base = ROOT / "fixtures" / "tiny-base"
    dataset = "datasets:\n  - path: data/train.jsonl\n    type: chat_template\n"
    (dest / "clean.yaml").write_text(f"base_model: {base}\n{dataset}", encoding="utf-8")
    (dest / "broken.yaml").write_text(f"base_model: {base}\nchat_template: jinja\nchat_template_jinja: chat.jinja\n"
                                      f"{dataset}", encoding="utf-8")
    (dest / "notes.yaml").write_text("owner: someone\n", encoding="utf-8")
    git("init", "-q", cwd=dest)
    git("add", "-A", cwd=dest)
    return dest


def test_hook_lints_the_configs_a_commit_touches(tmp_path: Path) -> None:
    pytest.importorskip("pre_commit", reason="pre-commit is in the [dev] extra")
    hooks = snapshot_repo(tmp_path / "evalsuite")
    project = user_repo(tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT"))}
    env["PRE_COMMIT_HOME"] = str(tmp_path / "pre-commit-home")  # `pre-commit run` builds its environment here

    def pre_commit(*args: str) -> tuple[int, str]:
        proc = subprocess.run([sys.executable, "-m", "pre_commit", *args, "--verbose"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=900)
        return proc.returncode, proc.stdout + proc.stderr

    # try-repo builds a fresh environment per call, in a temporary store
    code, log = pre_commit("try-repo", str(hooks), "evalsuite-lint", "--files", "clean.yaml")
    if code == 3 and any(s in log for s in NO_INDEX):
        pytest.skip(f"pre-commit cannot create the hook environment here (no package index): {log[-600:]}")
    assert code == 0, log[-3000:]
    assert "evalsuite lint: clean.yaml: 4 rows" in log and "0 error(s)" in log and "Passed" in log
    code, log = pre_commit("try-repo", str(hooks), "evalsuite-lint", "--files", "broken.yaml")
    assert code == 1, log[-3000:]
    assert "Failed" in log and "evalsuite lint: broken.yaml" in log and "error open-turn-at-end" in log
    assert "clean.yaml" not in log

    # the README's .pre-commit-config.yaml lines, with this snapshot as the repository
    rev = git("rev-parse", "HEAD", cwd=hooks).strip()
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks}\n    rev: {rev}\n    hooks:\n      - id: evalsuite-lint\n", encoding="utf-8")
    git("add", ".pre-commit-config.yaml", cwd=project)
    code, log = pre_commit("run", "evalsuite-lint", "--files", "data/train.jsonl")  # a data-only change
    assert code == 1, log[-3000:]
    assert "evalsuite lint: broken.yaml" in log and "evalsuite lint: clean.yaml" in log  # both train on it
    code, log = pre_commit("run", "evalsuite-lint", "--files", "chat.jinja", "notes.yaml")
    assert code == 1 and "evalsuite lint: broken.yaml" in log and "clean.yaml" not in log, log[-3000:]
    code, log = pre_commit("run", "evalsuite-lint", "--files", "notes.yaml")
    assert code == 0 and "is or feeds a training config" in log, log[-3000:]
    # the environment pre-commit built holds evalsuite and not torch: `pip install .` without extras lints
    site = list((tmp_path / "pre-commit-home").rglob("site-packages"))
    assert any((s / "evalsuite" / "lint").is_dir() for s in site), site
    assert not any((s / name).exists() for s in site for name in ("torch", "transformers", "datasets"))
