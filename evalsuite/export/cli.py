"""``evalsuite export SOURCE [--merged DIR] [--gguf FILE]``: exit 0 written (and, for a GGUF, no static drift error
when llama-cpp-python can check it), 1 written but the static drift checks found an error, 2 bad input."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="merge an adapter into its base (HF folder) and/or convert it to GGUF",
                       description="Merge a run dir or PEFT adapter into its base model and write a complete HF "
                                   "folder (--merged), and/or convert it with llama.cpp's convert_hf_to_gguf.py "
                                   "(--gguf), then check the GGUF against the source (static drift checks). "
                                   "Exit 0 written and clean, 1 written with drift errors, 2 bad input.")
    p.add_argument("source", type=Path, metavar="SOURCE", help="run dir (evalsuite train) or PEFT adapter folder")
    p.add_argument("--merged", type=Path, metavar="DIR", help="write the merged HF model folder here")
    p.add_argument("--gguf", type=Path, metavar="FILE", help="write a GGUF here (needs llama.cpp's converter)")
    p.add_argument("--outtype", default="f32", choices=("f32", "f16", "q8_0"), help="GGUF weight type (default f32)")
    p.add_argument("--llama-cpp", metavar="DIR", help="llama.cpp checkout holding convert_hf_to_gguf.py (default "
                                                      "$LLAMA_CPP_DIR; an extracted llama-cpp-python sdist works)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --gguf file or --merged folder")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from evalsuite.export.merge import check_output_dir, merge, open_source, read_folders

    if args.merged is None and args.gguf is None:
        raise EvalsuiteError("export: pass --merged DIR, --gguf FILE or both")
    source = open_source(args.source)
    if args.merged is not None:
        check_output_dir(args.merged, args.overwrite, source)
    converter = _check_gguf_target(args, read_folders(source)) if args.gguf is not None else None
    with tempfile.TemporaryDirectory(prefix="evalsuite-export-") as tmp:
        merged = merge(source, args.merged or Path(tmp) / "merged")
        if args.merged is not None:
            print(f"merged model: {merged}")
        if converter is None:
            return 0
        from evalsuite.export.llamacpp import convert, stage

        notes = stage(merged, Path(tmp) / "stage")
        for note in notes:
            print(f"for llama.cpp: {note}")
        convert(converter, Path(tmp) / "stage", args.gguf, args.outtype)
    size = args.gguf.stat().st_size / 2**20
    print(f"gguf: {args.gguf} ({size:.1f} MiB, {args.outtype})")
    return _verify(args.source, args.gguf)


def _check_gguf_target(args: argparse.Namespace, reads: list[Path]) -> Path:
    from evalsuite.export.llamacpp import find_converter
    from evalsuite.files import check_output_path

    target: Path = args.gguf
    if target.suffix != ".gguf":
        raise EvalsuiteError(f"--gguf {target}: expected a file name ending in .gguf")
    if target.is_dir():
        raise EvalsuiteError(f"--gguf {target}: is a folder; name the .gguf file to write")
    if target.exists() and not args.overwrite:
        raise EvalsuiteError(f"--gguf {target}: exists; pass --overwrite to replace it")
    if not target.parent.is_dir():
        raise EvalsuiteError(f"--gguf {target}: folder {target.parent} does not exist")
    check_output_path(target, "--gguf file", protected_dirs=reads, kind="gguf")  # never into the folders it reads
    return find_converter(args.llama_cpp)


def _verify(source: Path, gguf: Path) -> int:
    """The static drift checks on every built-in battery's conversations, when llama-cpp-python is there."""
    from evalsuite.drift.run import check_static
    from evalsuite.gguf.llama import INSTALL

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print(f"not checked: llama-cpp-python is not installed ({INSTALL}); run `evalsuite drift` once it is")
        return 0
    findings = check_static(source, gguf, [], weights=True)
    for f in findings:
        for line in f.lines():
            print(line)
    errors = sum(f.severity == "error" for f in findings)
    print(f"static drift checks: {errors} error(s)" if findings else "static drift checks: clean (llama.cpp loads it, "
          "stops on the end-of-turn token, renders and tokenizes the battery prompts as training did)")
    return 1 if errors else 0
