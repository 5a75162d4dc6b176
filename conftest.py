"""Shared pytest fixtures for the whole repo.

Third-party files (real templates, tokenizers, SQuAD) live outside the project in ``$EVALSUITE_FIXTURES``
(default ``../shared/fixtures``); tests that need them skip with a clear reason when the folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def shared_fixtures_dir() -> Path:
    return Path(os.environ.get("EVALSUITE_FIXTURES", ROOT.parent / "shared" / "fixtures")).resolve()


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    path = shared_fixtures_dir()
    if not path.is_dir():
        pytest.skip(f"third-party fixtures not found at {path} (set EVALSUITE_FIXTURES)")
    return path


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    """The embedded tiny Qwen2 base (committed, or rebuilt deterministically into the cache)."""
    from evalsuite.fixtures.tiny_model import ensure_tiny_base

    return ensure_tiny_base()
