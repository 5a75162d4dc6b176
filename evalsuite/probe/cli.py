"""``evalsuite probe`` (the battery runner without pytest) and ``evalsuite score squad`` (the official-style
SQuAD v1.1 scorer over a predictions file). Heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_json

if TYPE_CHECKING:
    from evalsuite.probe.options import ProbeOptions


def register(sub: Any) -> None:
    """Called once by ``evalsuite.cli``: adds ``probe`` and ``score``."""
    _add_probe(sub)
    _add_score(sub)


def _add_probe(sub: Any) -> None:
    from evalsuite.probe.options import add_options

    p = sub.add_parser("probe", help="run probe batteries on adapters (and the base) and write results.json",
                       description="Load the base once, attach every adapter, run the batteries, score, and write "
                                   "a results file. Exit 0 when every case passed, 1 when some failed, 2 on bad input "
                                   "or when some case was not run (the stall guard stopped a stuck engine).")
    p.add_argument("run_dirs", nargs="+", type=column_arg, metavar="DIR",
                   help="what to probe (repeatable, may be mixed): run dirs written by `evalsuite train`, PEFT adapter "
                        "folders, trainer output folders (newest complete checkpoint-N/), merged model folders, hub "
                        "adapter ids in the local Hugging Face cache, MODEL.gguf files run by llama.cpp (the gguf "
                        "engine; pip install 'evalsuite[gguf]'), http(s)://HOST:PORT/v1 OpenAI-compatible servers "
                        "(llama-server, Ollama, vLLM; the endpoint engine)")
    p.add_argument("--out", type=Path, default=Path("results.json"), help="results file (written atomically)")
    add_options(p.add_argument, "cli")  # the option table shared with the pytest plugin
    p.set_defaults(func=run_probe_cli)


def column_arg(arg: str) -> str | Path:
    """A column as given: an http(s) URL stays a string (``Path`` would fold its ``//``), anything else a path."""
    from evalsuite.probe.endpoint_client import is_url

    return arg if is_url(arg) else Path(arg)


def local_columns(columns: list[str | Path]) -> list[Path]:
    """The columns that are files or folders (the ones a results file must not be written into)."""
    return [c for c in columns if isinstance(c, Path)]


def _add_score(sub: Any) -> None:
    p = sub.add_parser("score", help="score saved predictions (squad: official v1.1 exact match and F1)")
    kinds = p.add_subparsers(dest="metric", metavar="METRIC", required=True)
    sq = kinds.add_parser("squad", help='print {"exact_match": ..., "f1": ...} like the official v1.1 script')
    sq.add_argument("--dataset", type=Path, required=True, help="SQuAD v1.1 JSON (e.g. dev-v1.1.json)")
    sq.add_argument("--predictions", type=Path, required=True, help='JSON object {"question id": "answer"}')
    sq.set_defaults(func=run_score_squad)


def run_probe_cli(args: argparse.Namespace) -> int:
    from evalsuite import launch
    from evalsuite.probe.options import check_out, options_from
    from evalsuite.probe.runner import run_probes

    options = options_from(lambda dest: getattr(args, dest), "cli")
    # before anything loads: never over an input or a run dir
    check_out(args.out, local_columns(args.run_dirs), options, "cli")
    if options.num_processes > 1 and not launch.inside_launch():
        return _relaunch(args, options)
    run = run_probes(args.run_dirs, options, out=args.out)
    if launch.inside_launch():
        return 0  # a rank of a data-parallel run: the launching process reads the results and gives the verdict
    return _report(run.results, args.out)


def _relaunch(args: argparse.Namespace, options: ProbeOptions) -> int:
    """``--num-processes N``: check the input here, run N copies under accelerate, then read their one results file."""
    from evalsuite import launch
    from evalsuite.probe.runner import plan_probes
    from evalsuite.results.io import load_results

    plan_probes(args.run_dirs, options)  # bad input is one clear error here, before any process starts
    code = launch.relaunch_cli(getattr(args, "_argv", sys.argv[1:]), options.num_processes)
    if code != 0:
        return code
    return _report(load_results(args.out), args.out)


def _report(results: Any, out: Path) -> int:
    from evalsuite.probe.runner import summary_lines

    for line in summary_lines(results):
        print(line)
    print(f"results: {out}")
    return exit_code(results.samples)


def exit_code(samples: Any) -> int:
    """2 when some sample was not run (no verdict: the run is not a result), else 0 when every one passed, else 1."""
    if any(not s.ran for s in samples):
        return 2
    return 0 if all(s.passed for s in samples) else 1


def squad_references(dataset: Any, path: Path) -> list[dict[str, Any]]:
    """The dev set's questions in file order, in the ``evaluate`` squad layout."""
    refs = []
    try:
        for article in dataset["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    answers = {"text": [a["text"] for a in qa["answers"]],
                               "answer_start": [a["answer_start"] for a in qa["answers"]]}
                    refs.append({"id": qa["id"], "answers": answers})
    except (KeyError, TypeError) as e:
        raise EvalsuiteError(f"{path}: not a SQuAD v1.1 dataset (data[].paragraphs[].qas[]): missing {e}") from None
    return refs


def run_score_squad(args: argparse.Namespace) -> int:
    dataset = read_json(args.dataset, "dataset")
    if isinstance(dataset, dict) and dataset.get("version") != "1.1":
        print(f"warning: {args.dataset}: evaluation expects v-1.1, but got dataset with v-{dataset.get('version')}",
              file=sys.stderr)
    refs = squad_references(dataset, args.dataset)
    preds = read_json(args.predictions, "predictions")
    if not isinstance(preds, dict):
        raise EvalsuiteError(f'{args.predictions}: expected a JSON object {{"question id": "answer", ...}}')
    for qid, text in preds.items():
        if not isinstance(text, str):
            raise EvalsuiteError(f"{args.predictions}: {qid}: expected an answer string, got {text!r}")
    if not preds:
        raise EvalsuiteError(f"{args.predictions}: no predictions (an empty object)")
    known = {r["id"] for r in refs}
    unknown = [qid for qid in preds if qid not in known]
    if unknown:
        some = ", ".join(repr(q) for q in unknown[:3]) + (", ..." if len(unknown) > 3 else "")
        if len(unknown) == len(preds):
            raise EvalsuiteError(f"{args.predictions}: none of its {len(preds):,} question ids is in {args.dataset} "
                                 f"({some}); predictions for another dataset?")
        print(f"warning: {args.predictions}: {len(unknown):,} prediction(s) for question ids not in {args.dataset} "
              f"are ignored ({some})", file=sys.stderr)
    missing = sum(r["id"] not in preds for r in refs)
    if missing:
        print(f"warning: {missing} question(s) without a prediction score 0", file=sys.stderr)
    from evalsuite.metrics import load_squad_v11

    metric = load_squad_v11()
    # evaluate pairs predictions with references one to one; a missing answer goes in as null and scores 0.
    scores = metric.compute(predictions=[{"id": r["id"], "prediction_text": preds.get(r["id"])} for r in refs],
                            references=refs)
    print(json.dumps({"exact_match": scores["exact_match"], "f1": scores["f1"]}))
    return 0
