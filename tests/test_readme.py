"""The README is part of the product: its set-up commands and config table must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from evalsuite.config.fields import FIELDS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_supported_config_key_is_documented() -> None:
    table = README.split("<!-- keys:start -->")[1].split("<!-- keys:end -->")[0]
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", table, re.M))
    assert documented == set(FIELDS)


def test_ci_runs_the_readme_test_command() -> None:
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]  # later sections show other installs
    commands = re.findall(r"^(pip install .+)$", setup, re.M)
    assert len(commands) == 2, "exactly two set-up commands"
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert any("evalsuite demo" in c for c in commands)
