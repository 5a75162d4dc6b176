"""Shared pytest fixtures for the whole repo.

Third-party files (real templates, tokenizers, SQuAD) live outside the project in ``$EVALSUITE_FIXTURES``
(default ``../shared/fixtures``); tests that need them skip with a clear reason when the folder is absent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from evalsuite.fixtures.smollm2 import RealModel

ROOT = Path(__file__).resolve().parent
# The user's evalsuite cache, read before ``fresh_generation_cache`` points EVALSUITE_CACHE elsewhere: what is
# expensive to rebuild and keyed soundly (the tiny base's fallback build, the trained test adapters) stays there.
USER_CACHE = Path(os.environ.get("EVALSUITE_CACHE") or Path.home() / ".cache" / "evalsuite").expanduser()


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

    return ensure_tiny_base(USER_CACHE)


def real_model_required() -> bool:
    """CI (``CI=true``, as GitHub and most runners set it) or ``EVALSUITE_REQUIRE_REAL_MODEL=1`` (``.ci/run``): a
    real-model test that skipped there would prove nothing, so it fails instead."""
    return os.environ.get("CI", "").lower() in ("true", "1") or os.environ.get("EVALSUITE_REQUIRE_REAL_MODEL") == "1"


def make_real_model(cache: Path) -> RealModel:
    """``ensure_smollm2(cache)``, or a skip naming why it cannot be made (a failure where it is required)."""
    from evalsuite.fixtures.smollm2 import ensure_smollm2

    from evalsuite.errors import EvalsuiteError

    try:
        return ensure_smollm2(cache)
    except EvalsuiteError as e:
        reason = f"the real model SmolLM2-135M-Instruct cannot be made: {e}"
    if real_model_required():
        pytest.fail(f"{reason} (CI or EVALSUITE_REQUIRE_REAL_MODEL=1: real-model tests may not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def smollm2() -> RealModel:
    """SmolLM2-135M-Instruct (``fixtures/smollm2.py``): the verified Q4_1 GGUF and its fp32 safetensors folder, made
    once in the user's cache (a download of 93 MB and about a minute's conversion the first time)."""
    return make_real_model(USER_CACHE)


@pytest.fixture(scope="session", autouse=True)
def fresh_generation_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every session generates into an empty generation cache (EVALSUITE_CACHE, inherited by the CLI subprocesses):
    a warm cache from an earlier run would serve outputs the code under test never produced.
    ``EVALSUITE_TESTS_KEEP_CACHE=1`` keeps EVALSUITE_CACHE as it is: the mutation check's warm-cache runs
    (``scripts/mutation_check.py``) use it to show that the cache key alone also catches a changed code path."""
    if os.environ.get("EVALSUITE_TESTS_KEEP_CACHE") == "1":
        yield USER_CACHE
        return
    root = tmp_path_factory.mktemp("evalsuite-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVALSUITE_CACHE", str(root))
        yield root
