"""``evalsuite judge RESULTS.json --judge MODEL --pair A:B [--battery NAME]``: pairwise preference by a judge model,
written into the results file. Generation options are the probe's own rows (``evalsuite.probe.options``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# The probe options that mean something for a judge: how to load and run it. Not the columns' (--base,
# --base-model), the SQuAD source's, or data-parallel re-launching.
JUDGE_OPTIONS = ("batteries", "allow_pickle", "trust_remote_code", "batch_size", "max_memory", "max_new_tokens",
                 "max_batch_seconds", "seed", "device", "no_cache", "engine", "tensor_parallel_size")


def register(sub: Any) -> None:
    from evalsuite.probe.options import BY_DEST

    p = sub.add_parser("judge", help="ask a judge model which of two columns answered better (both orders)",
                       description="Ask a judge model, for every case two columns of a results file share, which "
                                   "answer is better, once with each answer first; a verdict counts only when both "
                                   "orders agree (else a tie; unparseable replies are counted). The verdicts are "
                                   "written into the results file. Exit 0, or 2 on bad input.")
    p.add_argument("results", type=Path, metavar="RESULTS.json", help="a results file (`evalsuite probe --out`)")
    p.add_argument("--judge", type=Path, required=True, metavar="MODEL",
                   help="the judge: a model folder (config, weights, tokenizer with a chat template), a run dir or a "
                        "MODEL.gguf (llama.cpp, its embedded template; pip install 'evalsuite[gguf]')")
    p.add_argument("--pair", required=True, metavar="A:B", help="the two columns to compare, as named in the results")
    p.add_argument("--rubric", type=Path, metavar="FILE",
                   help="what the judge weighs (default: the battery's `rubric:`, else one for open prompts)")
    for dest in JUDGE_OPTIONS:
        option = BY_DEST[dest]
        kwargs = option.kwargs("cli")
        if dest == "batteries":
            kwargs["help"] = "a battery of the results file (repeatable; default: every battery both columns ran)"
        elif dest == "max_new_tokens":
            kwargs["help"] = "tokens the judge may write per reply (default 64)"
        p.add_argument(option.flag("cli"), **kwargs)
    p.set_defaults(func=run_judge_cli)


def run_judge_cli(args: argparse.Namespace) -> int:
    from evalsuite.judge.run import JudgeRequest, run_judge, summary_lines
    from evalsuite.probe.options import BY_DEST, options_from

    def value(dest: str) -> Any:
        default = BY_DEST[dest].default if BY_DEST[dest].type is not None else False
        return getattr(args, dest, [] if BY_DEST[dest].repeat else default)

    options = options_from(value, "cli")
    run = run_judge(JudgeRequest(args.results, args.judge, args.pair, list(args.batteries), args.rubric, options))
    for line in summary_lines(run.judgements):
        print(line)
    print(f"judged by {args.judge}: {run.generated} generated, {run.cached} cached; verdicts in {args.results}")
    return 0
