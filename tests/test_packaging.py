"""The built wheel carries every data file the package reads: a plain `pip install evalsuite` (not editable) must find
the demo's config, data and tiny base, the batteries and the report templates where an editable install does."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the source folder of each installed package (pyproject's package-dir)
MAPPED = {"evalsuite": "evalsuite", "trainers": "evalsuite/trainers", "probes": "evalsuite/probes",
          "fixtures": "evalsuite/fixtures"}


def _data_files() -> dict[str, Path]:
    """Wheel path -> source file, for every non-Python file under the package folders."""
    out = {}
    for folder, installed in MAPPED.items():
        for f in (ROOT / folder).rglob("*"):
            rel = f.relative_to(ROOT / folder)
            if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in rel.parts \
                    and not str(rel).startswith("egg-info"):
                out[f"{installed}/{rel.as_posix()}"] = f
    return out


@pytest.mark.slow
def test_the_wheel_carries_every_data_file(tmp_path: Path) -> None:
    setuptools = pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools installed")
    if int(setuptools.__version__.split(".")[0]) < 71:  # bdist_wheel is part of setuptools from 70.1
        pytest.importorskip("wheel", reason="this setuptools builds wheels only with the wheel package installed")
    src = tmp_path / "src"  # a copy, so the build writes nothing into the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md", *MAPPED):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(ROOT / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(tmp_path / "dist"), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("evalsuite-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _data_files()
    assert "evalsuite/fixtures/tiny-base/model.safetensors" in expected  # the walk sees the folders at all
    missing = sorted(set(expected) - names)
    assert not missing, f"not in the wheel: {missing}"
