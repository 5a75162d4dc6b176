"""The pytest-free probe runner: run dirs + batteries -> generations -> scores -> results.json.

Two steps so the pytest plugin can collect without loading a model:

- :func:`plan_probes` validates everything cheaply (run dirs, batteries, scorers; no torch): one clear error per
  problem before any minute is spent loading weights.
- :func:`execute` generates what the cache lacks (the base loaded once, every adapter attached, one batched pass
  over all columns), scores each sample and computes the metric rows with confidence intervals.

``evalsuite probe`` calls :func:`run_probes`, which does both and writes the results atomically.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalsuite import __version__
from evalsuite.errors import EvalsuiteError
from evalsuite.probe import parallel
from evalsuite.probe.batteries import Battery, Case, load_battery, resolve_batteries
from evalsuite.probe.cache import GenerationCache, base_fingerprint, column_key, prompt_key
from evalsuite.probe.generation import Generation, GenerationSettings, PromptCodec, Request
from evalsuite.probe.reasoning import final_answer, prompt_opens_reasoning, reasoning_details
from evalsuite.probe.scorers import Output
from evalsuite.probe.sources import BatteryUnavailable
from evalsuite.probe.targets import Target, build_targets
from evalsuite.results.aggregate import compute_metrics
from evalsuite.results.io import write_results
from evalsuite.results.schema import EngineInfo, Results, Sample, ScorerRef

log = logging.getLogger("evalsuite.probe")


@dataclass
class ProbeOptions:
    batteries: list[str] = field(default_factory=list)
    battery_dirs: list[Path] = field(default_factory=list)
    explicit_batteries: bool = False  # an unavailable battery is an error (named) or a skip (default set)
    include_base: bool = False
    base_model: str | None = None
    allow_pickle: bool = False
    trust_remote_code: bool = False
    batch_size: int = 64
    max_new_tokens: int | None = None
    max_batch_seconds: float | None = 120.0
    seed: int = 0
    device: str | None = None
    use_cache: bool = True
    cache_dir: Path | None = None
    squad_dataset: str | None = None
    squad_n: int | None = None
    stop_strings: tuple[str, ...] = ()
    engine: str = "hf"  # hf (transformers + peft) or vllm
    tensor_parallel_size: int = 1  # vllm only


@dataclass
class ProbePlan:
    options: ProbeOptions
    targets: list[Target]
    batteries: list[Battery]
    skipped: dict[str, str]  # battery name -> why it is not run


@dataclass
class ProbeRun:
    results: Results
    plan: ProbePlan
    generated: int
    cached: int


def plan_probes(run_dirs: Iterable[str | Path], options: ProbeOptions) -> ProbePlan:
    if options.batch_size < 1:
        raise EvalsuiteError(f"--batch-size: expected a positive integer, got {options.batch_size}")
    if options.engine not in ("hf", "vllm"):
        raise EvalsuiteError(f"--engine: expected hf or vllm, got {options.engine!r}")
    if options.tensor_parallel_size < 1:
        raise EvalsuiteError(f"--tensor-parallel-size: expected a positive integer, got {options.tensor_parallel_size}")
    if options.max_new_tokens is not None and options.max_new_tokens < 1:
        raise EvalsuiteError(f"--max-new-tokens: expected a positive integer, got {options.max_new_tokens}")
    targets = build_targets([Path(d) for d in run_dirs], options.include_base, options.base_model,
                            options.allow_pickle)
    batteries: list[Battery] = []
    skipped: dict[str, str] = {}
    overrides = {"dataset": options.squad_dataset, "n": options.squad_n}
    for path in resolve_batteries(options.batteries, options.battery_dirs):
        try:
            batteries.append(load_battery(path, {k: v for k, v in overrides.items() if v is not None}))
        except BatteryUnavailable as e:
            if options.explicit_batteries:
                raise
            skipped[path.stem] = str(e)
            warnings.warn(f"skipping battery {path.stem}: {e}", stacklevel=2)
    names = [b.name for b in batteries]
    if len(set(names)) != len(names):
        raise EvalsuiteError(f"two batteries share a name: {', '.join(sorted(n for n in names if names.count(n) > 1))}")
    return ProbePlan(options, targets, batteries, skipped)


def _settings(options: ProbeOptions) -> GenerationSettings:
    return GenerationSettings(batch_size=options.batch_size, seed=options.seed,
                              max_batch_seconds=options.max_batch_seconds, stop_strings=options.stop_strings)


def _max_new(battery: Battery, options: ProbeOptions) -> int:
    return options.max_new_tokens or battery.max_new_tokens


Selection = set[tuple[str, str, str]]  # (battery, case id, target name)


def execute(plan: ProbePlan, selected: Selection | None = None) -> ProbeRun:
    """Generate (cache first), score and aggregate; ``selected`` limits the work to those items."""
    options, settings = plan.options, _settings(plan.options)
    device = options.device or _default_device()
    cache = GenerationCache(options.cache_dir, options.use_cache)
    work = [(b, t, c) for b in plan.batteries for t in plan.targets for c in b.cases
            if selected is None or (b.name, c.id, t.name) in selected]
    gens: dict[tuple[str, str, str], Generation] = {}
    misses: list[tuple[Target, Battery, Case, str]] = []
    columns: dict[str, tuple[str, dict[str, Generation]]] = {}
    for target in plan.targets:
        mine = [(b, c) for b, t, c in work if t is target]
        if not mine:
            continue
        key = column_key(target.fingerprint(device, options.seed, base_fingerprint))
        entries = cache.load(key)
        columns[target.name] = (key, entries)
        for b, c in mine:
            pkey = prompt_key(target.codec.prompt_text(c.messages), _max_new(b, options), settings.stop_strings)
            if pkey in entries:
                gens[(b.name, c.id, target.name)] = entries[pkey]
            else:
                misses.append((target, b, c, pkey))
    cached = len(gens)
    if misses:
        log.info("generating %d prompt(s) in one pass over %d column(s) (%d cached)", len(misses),
                 len({t.name for t, *_ in misses}), cached)
        jobs = [(t.adapter_name, Request(c.messages, _max_new(b, options))) for t, b, c, _ in misses]
        outs = parallel.generate(_engine(plan, device, {t.name for t, *_ in misses}), jobs, settings)
        fresh: dict[str, dict[str, Generation]] = {}
        for (t, b, c, pkey), g in zip(misses, outs, strict=True):
            gens[(b.name, c.id, t.name)] = g
            fresh.setdefault(t.name, {})[pkey] = g
        for name, entries in fresh.items():
            if parallel.is_main():  # every process holds all generations; one writes
                cache.save(columns[name][0], entries)
    generated = len(misses)
    samples = [_sample(b, t, c, gens[(b.name, c.id, t.name)]) for b, t, c in work]
    extra = {b.name: b.metrics for b in plan.batteries if b.metrics}
    results = Results(created=datetime.now(timezone.utc).isoformat(timespec="seconds"), evalsuite_version=__version__,
                      engine=_engine_info(plan, settings, device, generated, cached),
                      adapters=[t.info for t in plan.targets], samples=samples,
                      metrics=compute_metrics(samples, extra) if samples else [])
    return ProbeRun(results, plan, generated, cached)


def _default_device() -> str:
    return parallel.default_device()  # cuda:LOCAL_RANK under `--num-processes`


def _engine(plan: ProbePlan, device: str, columns: set[str]) -> Any:
    """The base once, with the adapters of the columns that have something to generate."""
    from evalsuite.probe.engines.hf import HFEngine

    adapters = {t.adapter_name: t.path for t in plan.targets
                if t.name in columns and t.adapter_name is not None and t.path is not None}
    codecs: dict[str | None, PromptCodec] = {t.adapter_name: t.codec for t in plan.targets}
    if plan.options.engine == "vllm":
        from evalsuite.probe.engines.vllm import VLLMEngine

        return VLLMEngine(plan.targets[0].base_model, codecs, adapters,
                          tensor_parallel_size=plan.options.tensor_parallel_size, seed=plan.options.seed,
                          trust_remote_code=plan.options.trust_remote_code)
    return HFEngine(plan.targets[0].base_model, codecs, adapters, device=device,
                    allow_pickle=plan.options.allow_pickle, trust_remote_code=plan.options.trust_remote_code)


def _sample(battery: Battery, target: Target, case: Case, gen: Generation) -> Sample:
    """Score one generation: a reasoning block is cut off first, so the scorer sees the final answer."""
    out = Output(gen.text, gen.finish_reason, gen.raw, gen.tokens, target.codec.markers)
    tk = target.codec.tk
    specials = [c for c, (_i, special) in tk.added_tokens.items() if special]
    answer, split = final_answer(out, prompt_opens_reasoning(target.codec.prompt_text(case.messages)), specials)
    score = battery.scorer(case, answer)
    details = dict(score.details)
    if split is not None:
        details.update(reasoning_details(split, answer.text, len(tk.encode(split.reasoning or ""))))
    if gen.raw != gen.text:
        details["raw_output"] = gen.raw
    if gen.time_capped:
        details["time_capped"] = True
    if len(case.messages) > 1:
        details["messages"] = list(case.messages)
    return Sample(battery=battery.name, case=case.id, adapter=target.name, prompt=case.prompt, output=gen.text,
                  finish_reason=gen.finish_reason, tokens=gen.tokens, latency_s=gen.latency_s,
                  scorer=ScorerRef(battery.scorer_name, dict(battery.scorer_args)), passed=score.passed,
                  score=float(score.score), expected=case.expected, details=details)


def _engine_info(plan: ProbePlan, settings: GenerationSettings, device: str, generated: int,
                 cached: int) -> EngineInfo:
    from evalsuite.rundir.manifest import package_versions

    return EngineInfo(name=plan.options.engine, seed=settings.seed,
                      max_new_tokens=max([_max_new(b, plan.options) for b in plan.batteries] or [1]),
                      settings={"batch_size": settings.batch_size, "max_batch_seconds": settings.max_batch_seconds,
                                "stop_strings": list(settings.stop_strings), "device": device,
                                "max_new_tokens_per_battery": {b.name: _max_new(b, plan.options)
                                                               for b in plan.batteries},
                                "generated": generated, "cached": cached, "skipped_batteries": plan.skipped,
                                "processes": parallel.world()[1],
                                **({"tensor_parallel_size": plan.options.tensor_parallel_size}
                                   if plan.options.engine == "vllm" else {}),
                                "versions": package_versions()})


def run_probes(run_dirs: Iterable[str | Path], options: ProbeOptions, out: Path | None = None) -> ProbeRun:
    run = execute(plan_probes(run_dirs, options))
    if out is not None and parallel.is_main():  # data-parallel runs gather everything; rank 0 writes one file
        write_results(run.results, out)
    return run


def summary_lines(results: Results) -> list[str]:
    """One line per battery and column: accuracy with its CI, the other metrics, the finish reasons."""
    lines = []
    for battery in results.batteries():
        for a in results.adapters:
            samples = results.samples_for(battery, a.name)
            if not samples:
                continue
            metrics = [m for m in results.metrics if m.battery == battery and m.adapter == a.name]
            parts = [f"{m.name} {m.value:.3g}" + (f" [{m.ci_low:.3g}, {m.ci_high:.3g}]"
                                                  if m.ci_low is not None and m.ci_high is not None else "")
                     for m in metrics]
            reasons: dict[str, int] = {}
            for s in samples:
                reasons[s.finish_reason] = reasons.get(s.finish_reason, 0) + 1
            finish = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
            open_blocks = sum(bool(s.details.get("in_reasoning")) for s in samples)
            finish += f"; in-reasoning {open_blocks}" if open_blocks else ""
            lines.append(f"{battery:<17} {a.name:<14} {sum(s.passed for s in samples):>4}/{len(samples):<4} "
                         f"{'; '.join(parts)}  (finish: {finish})")
    return lines
