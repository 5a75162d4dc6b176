"""Which training configs a set of changed files touches (``evalsuite lint --changed``, the pre-commit hook).

A config is touched when it changed itself, or when a changed file is, or lies under, something it reads: a dataset
``path`` (file or folder), a ``chat_template_jinja`` file, the ``tokenizer_config`` or ``base_model`` directory
(tokenizer.json, generation_config.json, ...). Candidates are the YAML files git tracks (staged ones included) plus
the changed ones; a YAML file is a training config when its top level has ``datasets`` and ``base_model`` or
``tokenizer_config``. Relative paths resolve as the lint resolves them: from the working directory, else from the
config's folder.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from evalsuite.config.yaml_lines import load_yaml
from evalsuite.errors import EvalsuiteError

YAML_SUFFIXES = (".yaml", ".yml")
_DATASETS_KEY = re.compile(r"^datasets\s*:", re.M)
_SKIP_DIRS = {"node_modules", "__pycache__", "site-packages"}


def tracked_yaml(root: Path) -> list[Path]:
    """YAML files git tracks under ``root``; outside a git checkout, every YAML file below it (hidden folders and
    virtual environments skipped)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", "*.yaml", "*.yml"], cwd=root, capture_output=True,
                             timeout=60, check=True).stdout
        return [root / p for p in out.decode("utf-8", errors="surrogateescape").split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        return [p for suffix in YAML_SUFFIXES for p in sorted(root.rglob(f"*{suffix}"))
                if not any(part.startswith(".") or part in _SKIP_DIRS for part in p.relative_to(root).parts)]


def _candidates(config: Path, value: Any) -> list[Path]:
    if not isinstance(value, str) or not value.strip() or "{" in value:  # "{": template text, not a file
        return []
    p = Path(value).expanduser()
    return [p] if p.is_absolute() else [p, config.parent / p]


def references(config: Path) -> list[Path] | None:
    """Resolved paths ``config`` reads, or None when it is not a training config (or cannot be read)."""
    try:
        if not _DATASETS_KEY.search(config.read_text(encoding="utf-8")):
            return None
        data, _ = load_yaml(config)
    except (OSError, UnicodeDecodeError, EvalsuiteError):
        return None
    if not isinstance(data, dict) or "datasets" not in data or not ({"base_model", "tokenizer_config"} & set(data)):
        return None
    values: list[Any] = [data.get(k) for k in ("chat_template_jinja", "tokenizer_config", "base_model")]
    datasets = data.get("datasets")
    for spec in datasets if isinstance(datasets, list) else []:
        values.append(spec.get("path") if isinstance(spec, dict) else None)
    return [p.resolve() for v in values for p in _candidates(config, v)]


def _is_under(path: Path, ref: Path) -> bool:
    return path == ref or ref in path.parents


def touched_configs(changed: list[str], root: Path | None = None) -> list[Path]:
    """The training configs that ``changed`` files touch, in a stable order (changed configs first)."""
    root = root or Path(".")
    files = [Path(f) for f in changed]
    resolved = {f.resolve() for f in files}
    seen: set[Path] = set()
    out: list[Path] = []
    for cand in [f for f in files if f.suffix in YAML_SUFFIXES] + tracked_yaml(root):
        key = cand.resolve()
        if key in seen or not cand.is_file():
            continue
        seen.add(key)
        if key in resolved:
            if _looks_like_config(cand):
                out.append(cand)
            continue
        refs = references(cand)
        if refs and any(_is_under(f, r) for f in resolved for r in refs):
            out.append(cand)
    return out


def _looks_like_config(path: Path) -> bool:
    """A changed YAML file is linted when it is a training config, or would be one but does not parse (the lint then
    says where it breaks)."""
    if references(path) is not None:
        return True
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return bool(_DATASETS_KEY.search(text)) and bool(re.search(r"^(base_model|tokenizer_config)\s*:", text, re.M))
