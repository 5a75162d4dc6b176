"""Benchmark: what the render budget (``evalsuite.chat.budget``) costs per render, side by side in one process.

The same conversations through the same real templates, rendered two ways in interleaved rounds:

- with the budget: ``evalsuite.chat.template.render`` (loop and call hooks, size-checked operators, the output
  streamed and counted);
- without it: what ``render`` did before the budget: jinja's ``ImmutableSandboxedEnvironment`` with the same
  options and globals, the template compiled with ``from_string``, the same context, rendered in one piece.

The lint renders one conversation per *shape* for templates it can splice and every row for the others (Qwen3,
SmolLM3), so the per-row templates are the ones where a cost would show.

    python benchmarks/render_budget_bench.py [--rows 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("EVALSUITE_FIXTURES", ROOT.parent / "shared" / "fixtures"))
# Rendered per row by the lint (they inspect content): Qwen3, SmolLM3; spliced: Phi-3, Llama-3.1, Gemma.
TEMPLATES = ["Qwen-Qwen3-0.6B", "HuggingFaceTB-SmolLM3-3B", "Phi-3-mini-4k-instruct",
             "meta-llama-Llama-3.1-8B-Instruct", "google-gemma-2-2b-it"]


def find_template(name: str) -> Path | None:
    path = FIXTURES / "templates" / f"{name}.jinja"
    return path if path.is_file() else None


def conversations(n: int) -> list[list[dict[str, str]]]:
    rng = random.Random(0)
    words = ["the", "model", "learns", "to", "stop", "after", "its", "answer", "and", "never", "leaks", "a",
             "template", "token"]
    out = []
    for _ in range(n):
        conv = []
        for _ in range(rng.randint(1, 3)):
            conv.append({"role": "user", "content": " ".join(rng.choices(words, k=rng.randint(3, 30)))})
            conv.append({"role": "assistant", "content": " ".join(rng.choices(words, k=rng.randint(3, 60)))})
        out.append(conv)
    return out


def unbudgeted(source: str) -> Callable[[list[dict[str, str]], dict[str, Any]], str]:
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from evalsuite.chat import template as t

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[t._GenerationTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = t._tojson
    env.globals.update(raise_exception=t._raise_exception, strftime_now=t._strftime_now, dict=t._SafeDict(),
                       namespace=t._SafeNamespace)
    compiled = env.from_string(source)

    def render_before(messages: list[dict[str, str]], variables: dict[str, Any]) -> str:
        # evalsuite's render() as it was: the same context, rendered in one piece, no budget
        return compiled.render(**t._context(messages, False, variables, None, None, {}))

    return render_before


def before_side(fn: Callable[..., str], convs: list[Any], variables: dict[str, Any]) -> Callable[[], list[str]]:
    return lambda: [fn(c, variables) for c in convs]


def budget_side(render: Callable[..., Any], source: str, convs: list[Any],
                variables: dict[str, Any]) -> Callable[[], list[str]]:
    return lambda: [render(source, c, special_tokens=variables).text for c in convs]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    from evalsuite.chat.template import render

    convs = conversations(args.rows)
    variables = {"bos_token": "<s>", "eos_token": "</s>"}
    found = [p for name in TEMPLATES if (p := find_template(name)) is not None]
    if not found:
        print(f"no templates under {FIXTURES / 'templates'} (set EVALSUITE_FIXTURES)", file=sys.stderr)
        return 2
    print(f"{args.rows} conversations per template, best of {args.repeat} interleaved rounds, {os.cpu_count()} CPUs")
    print(f"  {'template':<34} {'without budget':>16} {'with budget':>16} {'ratio':>7}")
    for path in found:
        source = path.read_text(encoding="utf-8")
        sides = {"without": before_side(unbudgeted(source), convs, variables),
                 "with": budget_side(render, source, convs, variables)}
        assert sides["without"]() == sides["with"](), f"{path.name}: the budget changed a render"
        best = {k: float("inf") for k in sides}
        for _ in range(args.repeat):
            for side, fn in sides.items():
                t = time.perf_counter()
                fn()
                best[side] = min(best[side], time.perf_counter() - t)
        rate = {k: args.rows / v for k, v in best.items()}
        print(f"  {path.name:<34} {rate['without']:>11,.0f} r/s {rate['with']:>11,.0f} r/s "
              f"{rate['with'] / rate['without']:>6.2f}x")
    print(json.dumps({"rows": args.rows, "repeat": args.repeat}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
