"""`evalsuite lint`: the command line of the template and label-mask lint.

Exit status: 0 when no error-severity finding is left, 1 when one is, 2 for bad input or usage. This module imports
only argparse at load time (the lint has a cold-start budget); the lint itself needs tokenizers and jinja2, never
torch or transformers. ``--changed FILE...`` (the pre-commit hook) lints every training config those files touch
(see ``changed.py``); the exit status is then the worst of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError

FORMATS = ("text", "json", "github", "sarif")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "lint", help="check chat template, labels and tokenizer before training (no GPU, no torch)",
        description="Lint a fine-tuning set-up: template rendering, label masks, terminators, tokenizer. "
                    "Give the training CONFIG, or --tokenizer and --data.")
    p.add_argument("paths", nargs="*", metavar="CONFIG",
                   help="axolotl-style YAML config (the one `evalsuite train` reads); with --changed, the changed "
                        "files")
    p.add_argument("--changed", action="store_true",
                   help="the paths are changed files (a pre-commit hook passes them): lint every training config "
                        "they touch (the config itself, its data, template or tokenizer files)")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (tokenizer.json), without a config")
    p.add_argument("--data", metavar="FILE", action="append", default=[],
                   help="dataset file (.json/.jsonl: messages, conversations, instruction/output, "
                        "prompt/completion or text); repeatable")
    p.add_argument("--chat-template", metavar="FILE", help="jinja chat template to use instead of the tokenizer's")
    p.add_argument("--generation-config", metavar="FILE", help="generation_config.json whose eos_token_id a server "
                                                               "stops on")
    p.add_argument("--base-model", metavar="DIR", help="local model dir (config.json vocab size, embeddings)")
    p.add_argument("--max-length", type=int, metavar="N", help="sequence_len: truncate rows to N tokens")
    p.add_argument("--train-on-inputs", action="store_true", help="train prompt tokens too")
    p.add_argument("--no-train-on-reasoning", dest="train_on_reasoning", action="store_false",
                   help="mask the reasoning block that opens an answer (train only the answer after it)")
    p.add_argument("--packing", action="store_true", help="sample_packing on")
    p.add_argument("--pad-token", metavar="TOK", help="override the tokenizer's pad token")
    p.add_argument("--eos-token", metavar="TOK", help="override the tokenizer's eos token")
    p.add_argument("--collator", choices=("trl", "mask-pad-id"),
                   help="label collator to model: trl (labels padded with -100, evalsuite's backend; default) or "
                        "mask-pad-id (labels -100 wherever input_ids == pad_token_id, as transformers' "
                        "DataCollatorForLanguageModeling)")
    p.add_argument("--ignore", metavar="RULE", action="append", default=[],
                   help="downgrade a rule on purpose (repeatable); adds to the config's ignore: list")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text (default), json, github (workflow-command annotations on the data rows and config "
                        "lines) or sarif (SARIF 2.1.0 for code scanning)")
    p.add_argument("--show", type=int, default=0, metavar="N", help="also print the first N samples as tokens")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.set_defaults(func=run)


def _setup(args: argparse.Namespace) -> Any:
    from evalsuite.lint.setup import from_config, from_options

    if args.config and (args.tokenizer or args.data):
        raise EvalsuiteError("lint: give a CONFIG or --tokenizer/--data, not both")
    if args.config:
        overrides = {k: getattr(args, k) for k in ("chat_template", "max_length", "pad_token", "eos_token",
                                                   "base_model") if getattr(args, k) is not None}
        overrides |= {k: True for k in ("train_on_inputs", "packing") if getattr(args, k)}
        if not args.train_on_reasoning:
            overrides["no_train_on_reasoning"] = True
        if overrides:
            raise EvalsuiteError("lint: with a CONFIG, set these in the config file (they are options of the "
                                 "--tokenizer/--data form): " + ", ".join(f"--{k.replace('_', '-')}"
                                                                          for k in sorted(overrides)))
        return from_config(args.config, collator=args.collator, generation_config=args.generation_config)
    if not args.tokenizer or not args.data:
        raise EvalsuiteError("lint: give a CONFIG, or both --tokenizer DIR and --data FILE")
    if args.max_length is not None and args.max_length <= 0:
        raise EvalsuiteError(f"lint: --max-length: expected a positive integer, got {args.max_length}")
    return from_options(args.tokenizer, args.data, chat_template=args.chat_template,
                        generation_config=args.generation_config, max_length=args.max_length,
                        train_on_inputs=args.train_on_inputs, train_on_reasoning=args.train_on_reasoning,
                        packing=args.packing, pad_token=args.pad_token,
                        eos_token=args.eos_token, collator=args.collator, base_model=args.base_model)


def run(args: argparse.Namespace) -> int:
    if args.show < 0:
        raise EvalsuiteError(f"lint: --show: expected a non-negative integer, got {args.show}")
    if args.changed:
        return _run_changed(args)
    if len(args.paths) > 1:
        raise EvalsuiteError(f"lint: give one CONFIG, got {len(args.paths)} (lint several with --changed FILE...)")
    args.config = args.paths[0] if args.paths else None
    try:
        return _lint_one(args)
    except EvalsuiteError as e:
        if args.format == "github":  # the error also shows on the file in the workflow run (exit 2 as always)
            print(_error_annotation(e, args.config))
        raise


def _error_annotation(error: EvalsuiteError, config: str | None) -> str:
    from evalsuite.github import error_annotation

    return error_annotation(error, "evalsuite lint: bad input", config)


def _lint_one(args: argparse.Namespace) -> int:
    from evalsuite.lint.runner import run_lint

    setup = _setup(args)
    setup.ignore |= set(args.ignore)
    report = run_lint(setup, show=args.show)
    sys.stdout.write(_format(report, args))
    return report.exit_code


def _format(report: Any, args: argparse.Namespace) -> str:
    from evalsuite.lint.report import format_github, format_json, format_text

    config = Path(args.config) if args.config else None
    if args.format == "json":
        return format_json(report)
    if args.format == "github":
        return format_github(report, config)
    if args.format == "sarif":
        from evalsuite.lint.sarif import format_sarif

        return format_sarif(report, config)
    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    return format_text(report, colour)


def _run_changed(args: argparse.Namespace) -> int:
    """Lint each touched config on its own; a config with bad input prints its error and the others still run."""
    from evalsuite.lint.changed import touched_configs

    if args.format not in ("text", "github"):
        raise EvalsuiteError(f"lint: --changed prints text or github annotations, not {args.format} (lint one "
                             "CONFIG for json or sarif)")
    if args.tokenizer or args.data:
        raise EvalsuiteError("lint: --changed finds the configs itself; --tokenizer/--data are for one lint")
    configs = touched_configs(args.paths)
    if not configs:
        print(f"evalsuite lint: none of the {len(args.paths)} changed file(s) is or feeds a training config")
        return 0
    worst = 0
    for i, config in enumerate(configs):
        if i:
            sys.stdout.write("\n")
        args.config = str(config)
        try:
            code = _lint_one(args)
        except EvalsuiteError as e:
            code = e.exit_code
            print(f"error: {e}", file=sys.stderr)
            if args.format == "github":
                print(_error_annotation(e, str(config)))
        sys.stdout.flush()
        worst = max(worst, code)
    return worst
