"""Prepares ``.gpu/`` (git-ignored) for ``gpu_check.sh`` on a GPU machine that cannot reach a package registry.

- ``.gpu/whl``: wheels of the packages the GPU image lacks or has at other versions than this venv (trl, datasets
  and its small dependencies, transformers, huggingface_hub, peft, regex, bitsandbytes), at this venv's versions;
  bitsandbytes without the binaries for CUDA < 13, ROCm and XPU (43 MB -> about 5 MB), so everything fits a 64 MiB
  transfer.
- evalsuite's own wheel, built from this tree (so rebuild ``.gpu`` after changing the code).
- ``.gpu/llama32-tok``: a Llama-3 fast tokenizer built from the fixtures' GPT-2-format Llama-3.2 vocabulary, with
  the real Llama-3.2 chat template.

    python benchmarks/gpu_prep.py [--python-version 3.12]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata as md
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["trl", "datasets", "dill", "multiprocess", "transformers", "huggingface_hub", "peft", "regex",
            "bitsandbytes"]
KEEP_CUDA = ("cuda130", "cuda132")  # the GPU image's torch is a CUDA 13 build


def download(dest: Path, python_version: str) -> None:
    pins = [f"{name}=={md.version(name)}" for name in PACKAGES]
    platforms = [arg for n in (39, 34, 28, 27, 24, 17) for arg in ("--platform", f"manylinux_2_{n}_x86_64")]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, "--implementation", "cp", *platforms,
                    "--platform", "manylinux2014_x86_64", "-d", str(dest), *pins], check=True)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def slim_bitsandbytes(wheel: Path) -> None:
    """Drop the binaries the GPU image cannot load, rewriting RECORD so the wheel stays consistent."""
    def wanted(name: str) -> bool:
        lib = Path(name).name
        return not lib.startswith("libbitsandbytes_") or lib == "libbitsandbytes_cpu.so" or any(
            k in lib for k in KEEP_CUDA)

    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        lines = []
        for info in src.infolist():
            if info.filename == record_name or not wanted(info.filename):
                continue
            data = src.read(info.filename)
            dst.writestr(info, data)
            lines.append(_record_line(info.filename, data))
        dst.writestr(record_name, "\n".join([*lines, f"{record_name},,"]) + "\n")
    tmp.replace(wheel)


def build_tokenizer(out: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from lint_support import build_llama3, template

    build_llama3(out, chat_template=template("meta-llama-Llama-3.2-3B-Instruct.jinja"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python-version", default="3.12", help="the GPU image's Python")
    parser.add_argument("--out", type=Path, default=ROOT / ".gpu")
    args = parser.parse_args(argv)
    wheels = args.out / "whl"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    download(wheels, args.python_version)
    slim_bitsandbytes(next(wheels.glob("bitsandbytes-*.whl")))
    # evalsuite itself, from this tree: rebuild .gpu after changing the code
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
    build_tokenizer(args.out / "llama32-tok")
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
