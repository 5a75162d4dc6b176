"""`evalsuite` command line. Each subcommand lives in its own module with a ``register(subparsers)`` function;
this file only lists them, so adding a command is one line here. Modules must import cheaply (heavy imports inside
their handlers) because `evalsuite lint` has a cold-start budget."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence

from evalsuite import __version__
from evalsuite.errors import EvalsuiteError

# name -> module with register(subparsers). Order is the order shown in --help.
COMMANDS: dict[str, str] = {
    "demo": "evalsuite.demo",
    "lint": "evalsuite.lint.cli",
    "train": "evalsuite.train.cli",
    "backends": "evalsuite.train.cli",
    "probe": "evalsuite.probe.cli",
    "score": "evalsuite.probe.cli",
    "gate": "evalsuite.gates.cli",
    "baseline": "evalsuite.gates.cli",
    "report": "evalsuite.report.cli",
    "export": "evalsuite.export.cli",
    "drift": "evalsuite.drift.cli",
    "judge": "evalsuite.judge.cli",
}


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    return f"warning: {message}\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evalsuite",
        description="Is your LoRA/QLoRA fine-tune broken? Lint before training, probe after, gate in CI.",
    )
    parser.add_argument("--version", action="version", version=f"evalsuite {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    seen: set[str] = set()
    for module in COMMANDS.values():
        if module not in seen:
            seen.add(module)
            importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(argv) if argv is not None else sys.argv[1:]  # re-launchers (--num-processes) repeat it
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EvalsuiteError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        # The environment, not a bug: a file that cannot be read or written (disk full, permissions); -v shows
        # where it came from.
        if args.verbose:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        # Python 3.11's Path.resolve() reports a symlink loop as a RuntimeError ("Symlink loop from '...'"); any
        # path not checked through evalsuite.files.resolve_path still ends as one line.
        if args.verbose or not str(e).startswith("Symlink loop from"):
            raise
        print(f"error: {str(e)[len('Symlink loop from '):].strip(chr(39))}: a symlink loop", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
