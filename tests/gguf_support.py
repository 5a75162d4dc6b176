"""What the GGUF tests need from outside the project: llama-cpp-python (the `[gguf]` extra) and llama.cpp's converter.

The converter is never copied into the project. ``LLAMA_CPP_DIR`` names a llama.cpp checkout; otherwise
``EVALSUITE_LLAMA_CPP_SDIST`` names a llama-cpp-python source distribution (``pip download --no-binary :all:
--no-deps llama-cpp-python==0.3.36``, as ``.ci/run`` does), whose ``vendor/llama.cpp`` Python parts (the converter,
its ``conversion`` package and ``gguf-py``) are extracted once into ``$EVALSUITE_CACHE/llama-cpp/<digest>``. Without
them the tests skip with the reason, or fail when ``EVALSUITE_REQUIRE_GGUF=1`` (CI, where a skip would prove nothing).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER_CACHE = Path(os.environ.get("EVALSUITE_CACHE") or Path.home() / ".cache" / "evalsuite").expanduser()
PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
CLI_TIMEOUT = 600


def unavailable(reason: str) -> None:
    if os.environ.get("EVALSUITE_REQUIRE_GGUF") == "1":
        pytest.fail(f"EVALSUITE_REQUIRE_GGUF=1 but {reason}")
    pytest.skip(reason)


def require_llama_cpp_python() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        unavailable("llama-cpp-python is not installed (pip install 'evalsuite[gguf]')")


def _extract(sdist: Path) -> Path:
    from evalsuite.files import sha256_file

    target = USER_CACHE / "llama-cpp" / sha256_file(sdist)[:16]
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    work = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/", 1)
            rel = parts[1] if len(parts) == 2 else ""
            if not rel.startswith("vendor/llama.cpp/"):
                continue
            inner = rel[len("vendor/llama.cpp/"):]
            if member.isfile() and any(inner == p or inner.startswith(p) for p in PARTS):
                dest = work / inner
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                dest.write_bytes(src.read())
    if not (work / "convert_hf_to_gguf.py").is_file():
        shutil.rmtree(work, ignore_errors=True)
        raise RuntimeError(f"{sdist}: no vendor/llama.cpp/convert_hf_to_gguf.py inside")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(work, target)
    return target


def llama_cpp_dir() -> Path:
    """A folder holding llama.cpp's converter, or a skip (a failure under EVALSUITE_REQUIRE_GGUF=1)."""
    for module in ("sentencepiece",):
        if importlib.util.find_spec(module) is None:
            unavailable(f"llama.cpp's converter needs {module} (pip install 'evalsuite[gguf]')")
    if os.environ.get("LLAMA_CPP_DIR"):
        root = Path(os.environ["LLAMA_CPP_DIR"])
        for d in (root, root / "vendor" / "llama.cpp"):
            if (d / "convert_hf_to_gguf.py").is_file():
                return d
        unavailable(f"LLAMA_CPP_DIR={root} holds no convert_hf_to_gguf.py")
    sdist = os.environ.get("EVALSUITE_LLAMA_CPP_SDIST")
    if not sdist or not Path(sdist).is_file():
        unavailable("llama.cpp's converter not found: set LLAMA_CPP_DIR to a llama.cpp checkout or "
                    "EVALSUITE_LLAMA_CPP_SDIST to a llama-cpp-python sdist (.ci/run downloads one)")
    return _extract(Path(sdist))


def new_metadata(llama_cpp: Path, src: Path, dst: Path, *args: str) -> Path:
    """A broken GGUF made by gguf-py's own gguf_new_metadata.py."""
    script = llama_cpp / "gguf-py" / "gguf" / "scripts" / "gguf_new_metadata.py"
    done = subprocess.run([sys.executable, str(script), str(src), str(dst), *args, "--force"], capture_output=True,
                          text=True, timeout=CLI_TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    return dst


# llama.cpp on the 1.7 MiB tiny model is bound by thread synchronisation, not arithmetic: on the 2-core machine under
# load, benchmarks/gguf_bench.py measured 990 tokens/s on 1 thread and 35 on 2 (identical outputs), so the tests' CLI
# runs use one thread unless the caller's environment says otherwise.
THREADS = {"EVALSUITE_GGUF_THREADS": os.environ.get("EVALSUITE_GGUF_THREADS", "1")}


def evalsuite(*args: str, env: dict[str, str] | None = None, timeout: int = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evalsuite.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **THREADS, **(env or {})})
