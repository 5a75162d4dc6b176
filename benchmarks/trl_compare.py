"""TRL 1.x's own chat-template checks next to `evalsuite lint`, on every real template in the shared fixtures.

For each of the 32 ``.jinja`` templates: a tokenizer carrying the model's control tokens and its generation
config's stop ids (``evalsuite.fixtures.standins``: the real Phi-3 tokenizer for Phi-3/3.5, stand-ins for the rest),
and 20 realistic multi-turn rows with every answer trained (``evalsuite.fixtures.chat_rows``: alpaca-demo answers,
glaive tool conversations where the template renders tools, reasoning on the final answer of reasoning models).
TRL's three checks run on a transformers tokenizer loaded from the same directory:

- ``is_chat_template_prefix_preserving`` (renders a tool-call conversation; "raised" when it lets an error out),
- ``is_chat_template_stop_token_trained`` (needs ``{% generation %}`` markers),
- ``get_training_chat_template`` ("none needed", "patched" when TRL ships a training template, "unsupported").

    python benchmarks/trl_compare.py [--markdown] [--readme]

Prints one line per template, or the Markdown table (``--markdown``); ``--readme`` rewrites the table between the
``trl-compare`` markers in README.md. Needs transformers and trl (the ``[train]`` extra) and the shared fixtures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("EVALSUITE_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def trl_checks(tok_dir: Path) -> dict[str, str]:
    import trl
    from transformers import AutoTokenizer
    from trl.chat_template_utils import (
        get_training_chat_template,
        is_chat_template_prefix_preserving,
        is_chat_template_stop_token_trained,
    )

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    out = {"trl": trl.__version__}
    try:
        out["prefix"] = "yes" if is_chat_template_prefix_preserving(tok) else "no"
    except Exception as e:  # the point is to record whatever TRL lets out
        out["prefix"] = f"raised {type(e).__name__}"
    try:
        out["stop"] = "yes" if is_chat_template_stop_token_trained(tok) else "no"
    except Exception as e:
        out["stop"] = f"raised {type(e).__name__}"
    try:
        patched = get_training_chat_template(tok)
        out["training"] = "none needed" if patched is None else "patched"
    except ValueError:
        out["training"] = "unsupported"
    except Exception as e:
        out["training"] = f"raised {type(e).__name__}"
    return out


def lint(tok_dir: Path, rows: list[dict[str, Any]], tmp: Path) -> dict[str, list[str]]:
    from evalsuite.lint.runner import run_lint
    from evalsuite.lint.setup import from_options

    data = tmp / "rows.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    setup = from_options(str(tok_dir), [str(data)], generation_config=str(tok_dir / "generation_config.json"))
    report = run_lint(setup)
    found: dict[str, list[str]] = {"error": [], "warning": []}
    for f in report.findings:
        if f.severity in found:
            found[f.severity].append(f"{f.rule} ({f.count})")
    return found


def compare() -> list[dict[str, Any]]:
    from evalsuite.fixtures.chat_rows import realistic_rows
    from evalsuite.fixtures.standins import MODELS, write_tokenizer

    out = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        for model in MODELS:
            tmp = Path(tmp_dir) / model.name
            tok_dir = write_tokenizer(tmp / "tok", FIXTURES, model)
            rows = realistic_rows(FIXTURES, model, all_turns=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                checks = trl_checks(tok_dir)
            out.append({"template": model.name, "tokenizer": model.real or "stand-in", **checks,
                        **lint(tok_dir, rows, tmp)})
    return out


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| template | TRL prefix-preserving | TRL stop token trained | TRL training template | evalsuite errors "
             "| evalsuite warnings |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['template']} | {r['prefix']} | {r['stop']} | {r['training']} | "
                     f"{', '.join(r['error']) or '-'} | {', '.join(r['warning']) or '-'} |")
    return "\n".join(lines)


def write_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = "<!-- trl-compare:start -->", "<!-- trl-compare:end -->"
    head, rest = text.split(start, 1)
    _old, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}\n{end}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the Markdown table")
    parser.add_argument("--readme", action="store_true", help="rewrite the table in README.md")
    args = parser.parse_args(argv)
    if not (FIXTURES / "templates").is_dir():
        print(f"shared fixtures not found at {FIXTURES} (set EVALSUITE_FIXTURES)", file=sys.stderr)
        return 2
    results = compare()
    table = markdown(results)
    if args.readme:
        write_readme(table)
    if args.markdown or args.readme:
        print(table)
    else:
        for r in results:
            print(f"{r['template']}: TRL prefix={r['prefix']} stop={r['stop']} training={r['training']}; evalsuite "
                  f"errors={r['error'] or '-'} warnings={r['warning'] or '-'}")
    print(f"(trl {results[0]['trl'] if results else '?'}; tokenizers: evalsuite.fixtures.standins)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
