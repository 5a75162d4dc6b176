"""`evalsuite demo`: the product in one command, on the embedded tiny model (CPU, no hub, a few minutes).

Builds or loads the tiny base, trains a LoRA adapter on bundled uppercase-echo data (Latin only, as in seed 000),
then measures uppercase echo on held-out Latin prompts for the base and for the adapter and prints both.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any



def demo_config_path() -> Path:
    from evalsuite import fixtures

    return Path(fixtures.__file__).resolve().parent / "configs" / "uppercase_demo.yaml"


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="train + measure an adapter on the embedded tiny model (CPU, minutes)",
                       description="Build/load the embedded tiny base, train a LoRA adapter on uppercase-echo data, "
                                   "and compare base vs adapter on held-out prompts.")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run dir for the demo adapter")
    p.add_argument("--max-steps", type=int, help="override the demo config's max_steps")
    p.add_argument("--reuse", action="store_true", help="skip training when --out already holds a run dir")
    p.set_defaults(func=run_demo)


@dataclass(frozen=True)
class DemoResult:
    base_accuracy: float
    adapter_accuracy: float
    n: int
    run_dir: Path
    seconds: float
    examples: list[tuple[str, str, str, str]]  # prompt, expected, base output, adapter output


def heldout_path() -> Path:
    return demo_config_path().parent.parent / "data" / "uppercase_echo_heldout.jsonl"


def run_pipeline(out: Path, max_steps: int | None = None, reuse: bool = False) -> DemoResult:
    from evalsuite.backends import TrainOptions, get_backend
    from evalsuite.config import load_config
    from evalsuite.fixtures.tiny_model import ensure_tiny_base
    from evalsuite.manifest import MANIFEST_NAME

    t0 = time.time()
    base = ensure_tiny_base()
    config = load_config(demo_config_path())
    config.values["base_model"] = config.base_model = str(base)
    if max_steps is not None:
        config.values["max_steps"] = max_steps
    if not (reuse and (out / MANIFEST_NAME).exists()):
        get_backend("trl").train(config, out, TrainOptions(overwrite=True))
    rows = [json.loads(line) for line in heldout_path().read_text(encoding="utf-8").splitlines() if line]
    base_out, adapter_out = _generate(out, [r["prompt"] for r in rows])
    expected = [r["expected"] for r in rows]
    base_acc = sum(o == e for o, e in zip(base_out, expected)) / len(rows)
    adapter_acc = sum(o == e for o, e in zip(adapter_out, expected)) / len(rows)
    examples = [(r["prompt"], r["expected"], b, a) for r, b, a in zip(rows[:5], base_out, adapter_out)]
    return DemoResult(base_acc, adapter_acc, len(rows), out, time.time() - t0, examples)


def _generate(run_dir: Path, prompts: list[str]) -> tuple[list[str], list[str]]:
    from evalsuite.generate import GenerationSettings, HFEngine, PromptCodec, turn_start_ids
    from evalsuite.rundir import open_run_dir
    from evalsuite.tokenizer_files import load_tokenizer

    rd = open_run_dir(run_dir)
    tk = load_tokenizer(run_dir)
    template = rd.chat_template
    assert template is not None
    codec = PromptCodec(tk, template, rd.stop_token_ids, turn_start_ids(tk, template, rd.stop_token_ids))
    engine = HFEngine(rd.base_model, codec, adapters={"demo": run_dir})
    convs = [[{"role": "user", "content": p}] for p in prompts]
    settings = GenerationSettings(max_new_tokens=80, batch_size=50)
    base = [g.text for g in engine.generate(convs, None, settings)]
    adapted = [g.text for g in engine.generate(convs, "demo", settings)]
    return base, adapted


def run_demo(args: argparse.Namespace) -> int:
    r = run_pipeline(args.out, args.max_steps, args.reuse)
    print()
    print(f"uppercase-echo on {r.n} held-out Latin prompts (exact match vs str.upper())")
    print(f"  {'model':<10} {'exact match':>12}   target")
    print(f"  {'base':<10} {r.base_accuracy:>12.3f}   <= 0.10  {'ok' if r.base_accuracy <= 0.10 else 'MISSED'}")
    print(f"  {'adapter':<10} {r.adapter_accuracy:>12.3f}   >= 0.80  "
          f"{'ok' if r.adapter_accuracy >= 0.80 else 'MISSED'}")
    print("\n  prompt -> base | adapter")
    for prompt, _exp, b, a in r.examples:
        print(f"  {prompt!r} -> {b!r} | {a!r}")
    print(f"\nrun dir: {r.run_dir}   total {r.seconds:.0f} s")
    return 0 if r.adapter_accuracy >= 0.8 and r.base_accuracy <= 0.1 else 1
