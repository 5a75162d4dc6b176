"""`evalsuite train` and `evalsuite backends`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train a LoRA/QLoRA adapter from an axolotl-style config",
                       description="Train a LoRA/QLoRA adapter and write a run dir (adapter, tokenizer, template, "
                                   "generation config, manifest).")
    p.add_argument("config", type=Path, help="axolotl-compatible YAML config")
    p.add_argument("--output-dir", type=Path, help="run dir (default: the config's output_dir)")
    p.add_argument("--backend", help="trainer backend (default: the config's `backend`, else trl); "
                                     "see `evalsuite backends`")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue from the newest checkpoint-* in the run dir")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing run dir")
    p.add_argument("--max-steps", type=int, help="override max_steps (quick smoke runs)")
    p.add_argument("--num-processes", type=_positive_int, default=1, metavar="N",
                   help="data-parallel processes: re-launches under `accelerate launch` (one per GPU; gloo on "
                        "CPU); the config's deepspeed/fsdp settings apply")
    p.set_defaults(func=run_train)

    b = sub.add_parser("backends", help="list trainer backends and whether each is installed")
    b.set_defaults(func=run_backends)


def run_train(args: argparse.Namespace) -> int:
    from evalsuite.config.load import load_config
    from evalsuite.train.backends import TrainOptions, get_backend

    config = load_config(args.config)
    if args.max_steps is not None:
        config.values["max_steps"] = args.max_steps
    out_dir = args.output_dir or Path(config.output_dir)
    backend = get_backend(args.backend or config.values.get("backend") or "trl")
    from evalsuite.trainers import launch

    options = TrainOptions(resume=args.resume, overwrite=args.overwrite, num_processes=args.num_processes)
    if launch.needs_relaunch(backend.name, args.num_processes):
        return launch.relaunch(backend, args.config, out_dir, options, args.max_steps)
    run_dir = backend.train(config, out_dir, options)
    if launch.is_main_process():
        print(f"run dir: {run_dir}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def run_backends(args: argparse.Namespace) -> int:
    from evalsuite.train.backends import get_backend, registry

    for name, target in sorted(registry().items()):
        ok, how = get_backend(name).available()
        print(f"{name:<10} {'available' if ok else 'missing':<10} {how}  ({target})")
    return 0
