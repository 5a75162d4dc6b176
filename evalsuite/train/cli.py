"""`evalsuite train` and `evalsuite backends`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite import launch
from evalsuite.config.limits import check_range
from evalsuite.errors import EvalsuiteError
from evalsuite.files import remove_if_empty

if TYPE_CHECKING:
    from evalsuite.config.load import Config
    from evalsuite.train.backends import TrainerBackend, TrainOptions


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
    p.add_argument("--max-steps", type=positive_int, metavar="N", help="override max_steps (quick smoke runs)")
    p.add_argument("--num-processes", type=positive_int, default=1, metavar="N",
                   help="data-parallel processes: re-launches under `accelerate launch` (one per GPU; gloo on "
                        "CPU); the config's deepspeed/fsdp settings apply")
    p.set_defaults(func=run_train)

    b = sub.add_parser("backends", help="list trainer backends and whether each is installed")
    b.set_defaults(func=run_backends)


def run_train(args: argparse.Namespace) -> int:
    from evalsuite.config.load import load_config
    from evalsuite.train.backends import TrainOptions, get_backend

    check_range("max_steps", args.max_steps, "--max-steps")
    check_range("num_processes", args.num_processes, "--num-processes")
    config = load_config(args.config)
    if args.max_steps is not None:
        config = replace(config, max_steps=args.max_steps)
    out_dir = args.output_dir or Path(config.output_dir)
    _check_not_in_base(out_dir, config.base_model)
    backend = get_backend(args.backend or config.backend or "trl")
    options = TrainOptions(resume=args.resume, overwrite=args.overwrite, num_processes=args.num_processes)
    created = not out_dir.exists()
    try:
        if launch.needs_relaunch(backend.name, args.num_processes):
            return relaunch(backend, config, out_dir, options, args.max_steps)
        run_dir = backend.train(config, out_dir, options)
    except BaseException:
        if created and launch.is_main_process():
            from evalsuite.rundir.contract import MARKERS

            remove_if_empty(out_dir, MARKERS)  # a failed run leaves no empty folder behind
        raise
    if launch.is_main_process():
        print(f"run dir: {run_dir}")
    return 0


def relaunch(backend: TrainerBackend, config: Config, out_dir: Path, options: TrainOptions,
             max_steps: int | None) -> int:
    """Validate and prepare here (one clean error, nothing half-done), then start N ranks and wait for them."""
    from evalsuite.train.backends import prepare_out_dir

    ok, how = backend.available()
    if not ok:
        raise EvalsuiteError(f"the {backend.name} backend is not installed: {how}")
    out_dir = out_dir.resolve()
    prepare_out_dir(out_dir, options, config)  # refuses a non-empty dir, or clears it for --overwrite, once
    plan = launch.LaunchPlan(options.num_processes, launch.cuda_device_count(), launch.free_port())
    command = launch.build_command(plan, launch.child_train_args(config.path, out_dir, backend.name,
                                                                 resume=options.resume, max_steps=max_steps))
    code = launch.run(command)
    if code != 0:
        print(f"error: training failed in one of the {plan.num_processes} processes (exit {code}); "
              "see the rank output above", file=sys.stderr)
        return 1
    return 0  # rank 0 has printed the run dir


def _check_not_in_base(out_dir: Path, base_model: str | None) -> None:
    """A run dir is never written into the local base model folder it trains from (nor is it that folder)."""
    from evalsuite.files import resolve_path

    if not base_model or not Path(base_model).is_dir():
        return
    base, out = resolve_path(base_model, "base_model"), resolve_path(out_dir, "output dir")
    if out == base or base in out.parents:
        raise EvalsuiteError(f"{out_dir}: output dir is {'' if out == base else 'inside '}the base model folder "
                             f"{base_model}, which training reads; choose a folder outside it")


def positive_int(text: str) -> int:
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
