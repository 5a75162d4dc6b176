"""`evalsuite demo`: the product in one command, on the embedded tiny model (CPU, no hub, minutes).

Builds or loads the tiny base, trains a LoRA adapter on bundled uppercase-echo data (Latin only, as in seed 000),
then runs every probe battery on the base and on the adapter through the probe runner and prints a table. The
targets are the foundation's: uppercase-echo exact match >= 0.8 for the adapter and <= 0.1 for the base (the demo
exits 1 when either is missed). SQuAD runs on a 20-question sample here to keep the demo short; the tiny model
scores about 0 there, as expected of a 1M-parameter echo model.
"""

from __future__ import annotations

import argparse
import importlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.train.cli import positive_int

TARGET_ADAPTER = 0.8
TARGET_BASE = 0.1
DEMO_SQUAD_N = 20
TARGET_BATTERY = "uppercase-echo"


def demo_config_path() -> Path:
    fixtures = importlib.import_module("evalsuite.fixtures")  # mapped from the repo's fixtures/ folder
    return Path(str(fixtures.__file__)).resolve().parent / "configs" / "uppercase_demo.yaml"


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="train + probe an adapter on the embedded tiny model (CPU, minutes)",
                       description="Build/load the embedded tiny base, train a LoRA adapter on uppercase-echo data, "
                                   "and run every probe battery on base and adapter.")
    p.add_argument("--out", type=Path, default=Path("runs/evalsuite-demo"),
                   help="run dir for the demo adapter: a new or empty folder, or one an earlier demo made (default "
                        "runs/evalsuite-demo)")
    p.add_argument("--max-steps", type=positive_int, metavar="N", help="override the demo config's max_steps")
    p.add_argument("--reuse", action="store_true", help="skip training when --out already holds a run dir")
    p.add_argument("--results", type=Path, default=None, help="also write the probe results JSON here")
    p.set_defaults(func=run_demo)


@dataclass(frozen=True)
class DemoResult:
    results: Any  # evalsuite.results.schema.Results
    base_accuracy: float
    adapter_accuracy: float
    n: int
    run_dir: Path
    seconds: float
    train_seconds: float

    @property
    def met(self) -> bool:
        return self.adapter_accuracy >= TARGET_ADAPTER and self.base_accuracy <= TARGET_BASE


def train_demo_adapter(out: Path, max_steps: int | None = None) -> Path:
    """Train the demo adapter with the demo config on the embedded base (the tests share this function)."""
    from evalsuite.config.load import load_config
    from evalsuite.fixtures.tiny_model import ensure_tiny_base
    from evalsuite.train.backends import TrainOptions, get_backend

    base = ensure_tiny_base()
    config = replace(load_config(demo_config_path()), base_model=str(base))
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


def probe_demo(run_dir: Path, squad_n: int = DEMO_SQUAD_N) -> Any:
    """Every battery on base + adapter; the same runner `evalsuite probe` and the pytest plugin use."""
    from evalsuite.probe.runner import ProbeOptions, run_probes

    return run_probes([run_dir], ProbeOptions(include_base=True, squad_n=squad_n)).results


def accuracy(results: Any, kind: str) -> tuple[float, int]:
    name = next(a.name for a in results.adapters if a.kind == kind)
    metric = results.metric(TARGET_BATTERY, name, "accuracy")
    return metric.value, metric.n


def run_pipeline(out: Path, max_steps: int | None = None, reuse: bool = False) -> DemoResult:
    from evalsuite.rundir.manifest import MANIFEST_NAME

    t0 = time.time()
    if not (reuse and (out / MANIFEST_NAME).exists()):
        train_demo_adapter(out, max_steps)
    trained = time.time() - t0
    results = probe_demo(out)
    base_acc, n = accuracy(results, "base")
    adapter_acc, _ = accuracy(results, "adapter")
    return DemoResult(results, base_acc, adapter_acc, n, out, time.time() - t0, trained)


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
    if args.results is not None:
        from evalsuite.files import check_output_path

        check_output_path(args.results, "--results file", protected_dirs=[args.out], kind="results")
    r = run_pipeline(args.out, args.max_steps, args.reuse)
    if args.results is not None:
        from evalsuite.results.io import write_results

        write_results(r.results, args.results)
    print()
    print("probe batteries on the embedded tiny base and the demo adapter (95% confidence intervals)")
    for line in table_lines(r.results):
        print(line)
    print()
    print(f"target ({TARGET_BATTERY} exact match on {r.n} prompts: 4 from the seeds + held-out strings):")
    print(f"  base     {r.base_accuracy:.3f}   <= {TARGET_BASE:.2f}  "
          f"{'ok' if r.base_accuracy <= TARGET_BASE else 'MISSED'}")
    print(f"  adapter  {r.adapter_accuracy:.3f}   >= {TARGET_ADAPTER:.2f}  "
          f"{'ok' if r.adapter_accuracy >= TARGET_ADAPTER else 'MISSED'}")
    adapter = next(a.name for a in r.results.adapters if a.kind == "adapter")
    print("\n  prompt -> base | adapter")
    for s in r.results.samples_for(TARGET_BATTERY, adapter)[:4]:
        base = next(b for b in r.results.samples_for(TARGET_BATTERY, "base") if b.case == s.case)
        print(f"  {s.prompt!r} -> {base.output!r} | {s.output!r}")
    print(f"\nrun dir: {r.run_dir}   training {r.train_seconds:.0f} s, total {r.seconds:.0f} s")
    return 0 if r.met else 1
