"""The pytest-free probe runner: run dirs + batteries -> generations -> scores -> results.json.

Two steps so the pytest plugin can collect without loading a model:

- :func:`plan_probes` validates everything cheaply (options, run dirs, batteries, scorers; no torch): one clear
  error per problem before any minute is spent loading weights.
- :func:`execute` generates what the cache lacks (one engine per base model, built from the engine registry unless
  the caller passes a factory: every adapter attached, one batched pass over all columns), scores each sample and
  computes the metric rows with confidence intervals.

``evalsuite probe`` calls :func:`run_probes`, which does both and writes the results atomically.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from evalsuite import __version__
from evalsuite.errors import EvalsuiteError
from evalsuite.files import write_failure
from evalsuite.probe import guard, parallel
from evalsuite.probe.batteries import Battery, Case, load_battery, resolve_batteries
from evalsuite.probe.cache import GenerationCache, base_fingerprint, column_key, prompt_key
from evalsuite.probe.engines import Engine, EngineFactory, EngineSpec, GenerationInterrupted, engine_class
from evalsuite.probe.generation import Generation, GenerationSettings, Request
from evalsuite.probe.options import ProbeOptions, validate
from evalsuite.probe.outcome import summary_lines, write_run
from evalsuite.probe.progress import ProbeProgress, SessionCost
from evalsuite.probe.reasoning import final_answer, prompt_opens_reasoning, reasoning_details
from evalsuite.probe.scorers import Output
from evalsuite.probe.sources import BatteryUnavailable
from evalsuite.probe.targets import Target, build_targets
from evalsuite.results.aggregate import compute_metrics
from evalsuite.results.schema import EngineInfo, Results, Sample, ScorerRef

__all__ = ["Generated", "ProbeOptions", "ProbePlan", "ProbeRun", "Want", "build_results", "execute", "generate_cached",
           "plan_probes", "run_probes", "summary_lines", "write_run"]

log = logging.getLogger("evalsuite.probe")

Key = tuple[str, str, str]  # (battery, case id, target name)
Selection = set[Key]


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
    cache_dir: Path | None = None  # where every generation of this run is cached; None: not all are (--no-cache)
    progress: ProbeProgress | None = None  # the counters of what was generated (None when the cache held it all)


@dataclass(frozen=True)
class Want:
    """One generation wanted: a request for one column."""

    target: Target
    request: Request


@dataclass
class Generated:
    """The generations of a list of wants, in order, and how many were generated or served by the cache."""

    generations: list[Generation]
    generated: int
    cached: int
    cache_dir: Path | None = None  # set when every one of them is in the cache
    progress: ProbeProgress | None = None  # the counters of what was generated (None when nothing was)


def plan_probes(run_dirs: Iterable[str | Path], options: ProbeOptions) -> ProbePlan:
    validate(options)
    targets = _columns(list(run_dirs), options)
    batteries, skipped = _load_batteries(options)
    names = [b.name for b in batteries]
    if len(set(names)) != len(names):
        raise EvalsuiteError(f"two batteries share a name: {', '.join(sorted(n for n in names if names.count(n) > 1))}")
    return ProbePlan(options, targets, batteries, skipped)


def _columns(args: list[str | Path], options: ProbeOptions) -> list[Target]:
    """Run dirs' columns (and the base), one per ``.gguf`` (gguf engine), one per ``http(s)://`` URL (endpoint)."""
    from evalsuite.probe.endpoint_client import is_url
    from evalsuite.probe.endpoint_target import endpoint_columns
    from evalsuite.probe.gguf_target import gguf_columns, split_columns

    urls = [str(a) for a in args if is_url(str(a))]
    run_dirs, ggufs = split_columns([Path(a) for a in args if not is_url(str(a))])
    if (ggufs or urls) and options.include_base and not run_dirs:
        raise EvalsuiteError("--base: a GGUF or endpoint column has no base model to compare with; give its run dir")
    targets = build_targets(run_dirs, options.include_base, options.base_model, options.allow_pickle) \
        if run_dirs or not (ggufs or urls) else []
    training = next((t.codec.template for t in targets if t.kind == "adapter"), None)
    base = targets[0].info.base_model if targets else None
    targets += gguf_columns(ggufs, {t.name for t in targets}, options.gguf_template, training, base)
    return targets + endpoint_columns(urls, targets, options.endpoint)


def _load_batteries(options: ProbeOptions) -> tuple[list[Battery], dict[str, str]]:
    """The batteries to run, and the default ones whose data is missing (battery name -> why)."""
    batteries: list[Battery] = []
    skipped: dict[str, str] = {}
    overrides = {k: v for k, v in {"dataset": options.squad_dataset, "n": options.squad_n}.items() if v is not None}
    for path in resolve_batteries(options.batteries, options.battery_dirs):
        try:
            batteries.append(load_battery(path, overrides))
        except BatteryUnavailable as e:
            if options.explicit_batteries:
                raise
            skipped[path.stem] = str(e)
            warnings.warn(f"skipping battery {path.stem}: {e}", stacklevel=3)
    return batteries, skipped


def _settings(options: ProbeOptions) -> GenerationSettings:
    from evalsuite.probe.memplan import AUTO_MAX_ROWS

    return GenerationSettings(batch_size=options.batch_size or AUTO_MAX_ROWS, seed=options.seed,
                              stall_seconds=options.max_batch_seconds, stop_strings=options.stop_strings,
                              auto_batch=options.batch_size is None, max_memory=options.max_memory)


def _max_new(battery: Battery, options: ProbeOptions) -> int:
    return options.max_new_tokens or battery.max_new_tokens


def execute(plan: ProbePlan, selected: Selection | None = None, engine: EngineFactory | None = None,
            progress_to: TextIO | None = None, cost: SessionCost | None = None) -> ProbeRun:
    """Generate (cache first), score and aggregate; ``selected`` limits the work to those items. A progress bar is
    drawn on ``progress_to`` (default stdout) when it is a terminal; the session's cost (``cost``, added to when
    given: a session that also generates elsewhere) goes into the results.

    ``engine`` builds the engine of each base model from its :class:`EngineSpec` (default: the class the registry
    holds under ``options.engine``, or under the columns' own engine: gguf for a ``.gguf`` file). The cache and the
    results record ``options.engine``, so a factory must build the engine that name stands for: tests register their
    fake engine as ``fake`` and pass a scripted instance."""
    device = plan.options.device or parallel.default_device()  # cuda:LOCAL_RANK under `--num-processes`
    work = [(b, t, c) for b in plan.batteries for t in plan.targets for c in b.cases
            if selected is None or (b.name, c.id, t.name) in selected]
    wants = [Want(t, Request(c.messages, _max_new(b, plan.options), c.tools)) for b, t, c in work]
    cost = SessionCost() if cost is None else cost
    got = generate_cached(plan, wants, device, engine or registry_factory(plan), cost=cost, progress_to=progress_to)
    samples = [_sample(b, t, c, g) for (b, t, c), g in zip(work, got.generations, strict=True)]
    results = build_results(plan, samples, device, got.generated, got.cached, cost)
    return ProbeRun(results, plan, got.generated, got.cached, got.cache_dir, got.progress)


def generate_cached(plan: ProbePlan, wants: list[Want], device: str, engine: EngineFactory,
                    stop_strings: tuple[str, ...] | None = None, keys: dict[str, str] | None = None,
                    cost: SessionCost | None = None, progress_to: TextIO | None = None) -> Generated:
    """The generations of ``wants``, in order: what the cache holds is served, the rest generated in one pass per
    base model and saved. ``stop_strings`` defaults to the options'; ``keys`` memoises the column cache keys;
    ``cost`` adds up the seconds spent loading and generating; a progress bar goes to ``progress_to`` on a terminal."""
    stops = plan.options.stop_strings if stop_strings is None else stop_strings
    cache = GenerationCache(plan.options.cache_dir, plan.options.use_cache)
    keys = {} if keys is None else keys
    bases: dict[tuple[str, str | None], dict[str, Any]] = {}  # columns on one base hash its weights once

    def base_fp(base: str, revision: str | None) -> dict[str, Any]:
        if (base, revision) not in bases:
            bases[base, revision] = base_fingerprint(base, revision)
        return bases[base, revision]

    held: dict[str, dict[str, Generation]] = {}  # column -> its cache file's entries (one file per column)
    found: dict[int, Generation] = {}
    misses: list[tuple[int, str]] = []  # (index in wants, prompt key)
    for i, w in enumerate(wants):
        name = w.target.name
        if name not in held and not cache.enabled:  # no key needed: --no-cache skips hashing the weights
            held[name] = {}
        elif name not in held:
            if name not in keys:
                fingerprint = w.target.fingerprint(device, plan.options.seed, base_fp)
                keys[name] = column_key({**fingerprint, "engine": w.target.engine or plan.options.engine})
            held[name] = cache.load(keys[name])
        prompt = w.target.codec.prompt_text(w.request.messages, w.request.tools)
        pkey = prompt_key(prompt, w.request.max_new_tokens, stops)
        if pkey in held[name]:
            found[i] = held[name][pkey]
        else:
            misses.append((i, pkey))
    if misses:
        log.info("generating %d prompt(s) in one pass over %d column(s) (%d cached)", len(misses),
                 len({wants[i].target.name for i, _ in misses}), len(found))
        progress = ProbeProgress.for_stream(Counter(wants[i].target.name for i, _ in misses), {}, progress_to,
                                            draw=parallel.is_main())
        try:
            fresh = _generate(plan, [wants[i] for i, _ in misses], device, engine, stops, cost or SessionCost(),
                              progress)
        except GenerationInterrupted as e:  # keep what was generated before the fault
            saved = _save(cache, keys, [(wants[misses[j][0]].target.name, misses[j][1]) for j in e.done],
                          list(e.done.values()))
            raise EvalsuiteError(e.kept(len(misses), saved)) from None
        found.update((i, g) for (i, _), g in zip(misses, fresh, strict=True))
        cached = _save(cache, keys, [(wants[i].target.name, k) for i, k in misses], fresh)
    else:
        cached, progress = cache.enabled, None
    return Generated([found[i] for i in range(len(wants))], len(misses), len(wants) - len(misses),
                     cache.root if cached else None, progress)


def _generate(plan: ProbePlan, misses: list[Want], device: str, factory: EngineFactory,
              stops: tuple[str, ...], cost: SessionCost, progress: ProbeProgress) -> list[Generation]:
    """The misses' generations, in order: one engine per base model, one pass over its columns; the seconds spent
    building engines and generating are added to ``cost``."""
    settings = replace(_settings(plan.options), stop_strings=stops, progress=progress.update)
    out: dict[int, Generation] = {}
    with progress:
        for base in dict.fromkeys(m.target.base_model for m in misses):
            mine = [i for i, m in enumerate(misses) if m.target.base_model == base]
            t0 = time.perf_counter()
            engine = factory(engine_spec(plan, base, device, {misses[i].target.name for i in mine}))
            t1 = time.perf_counter()
            progress.columns = {misses[i].target.adapter_name: misses[i].target.name for i in mine}
            jobs = [(misses[i].target.adapter_name, misses[i].request) for i in mine]
            try:
                gens = guard.generate_guarded(engine, jobs, settings, parallel.generate,
                                              retry=parallel.world()[1] == 1)
            except GenerationInterrupted as e:  # what this and the earlier bases finished, by index in ``misses``
                raise GenerationInterrupted(str(e), {**out, **{mine[j]: g for j, g in e.done.items()}}) from None
            progress.settle([(a, g) for (a, _), g in zip(jobs, gens, strict=True)])
            out.update(zip(mine, gens, strict=True))
            cost.load_s += t1 - t0
            cost.generate_s += time.perf_counter() - t1
    return [out[i] for i in range(len(misses))]


def registry_factory(plan: ProbePlan) -> EngineFactory:
    """Build each base's engine from the registry: its columns' own engine (a ``.gguf`` file: gguf), else
    ``options.engine``."""
    def build(spec: EngineSpec) -> Engine:
        own = next((t.engine for t in plan.targets if t.base_model == spec.base_model and t.engine), None)
        cls: EngineFactory = engine_class(own or plan.options.engine)
        return cls(spec)

    return build


def engine_spec(plan: ProbePlan, base: str, device: str, columns: set[str]) -> EngineSpec:
    """The engine of one base: every column's codec, the adapters of the columns that have something to generate."""
    mine = [t for t in plan.targets if t.base_model == base]
    adapters = {t.adapter_name: t.path for t in mine
                if t.name in columns and t.adapter_name is not None and t.path is not None}
    o = plan.options
    own = next((t.engine_info for t in mine if t.engine and t.engine_info), None)  # a column's own engine's facts
    return EngineSpec(base, {t.adapter_name: t.codec for t in mine}, adapters, device=device, seed=o.seed,
                      allow_pickle=o.allow_pickle, trust_remote_code=o.trust_remote_code,
                      tensor_parallel_size=o.tensor_parallel_size, options=own or {})


def _save(cache: GenerationCache, keys: dict[str, str], misses: list[tuple[str, str]],
          fresh: list[Generation]) -> bool:
    """Add the new generations to their columns' cache files; every process holds them all, one writes. A cache
    that cannot be written (disk full) is a warning, not the end of the run: the results still hold them all.
    True when every new generation is in the cache."""
    if not parallel.is_main() or not cache.enabled:
        return False
    by_column: dict[str, dict[str, Generation]] = {}
    for (name, pkey), gen in zip(misses, fresh, strict=True):
        by_column.setdefault(name, {})[pkey] = gen
    try:
        for name, entries in by_column.items():
            cache.save(keys[name], entries)
    except OSError as e:
        warnings.warn(f"the generation cache was not saved ({write_failure(e) or e})", stacklevel=2)
        return False
    return True


def _sample(battery: Battery, target: Target, case: Case, gen: Generation) -> Sample:
    """Score one generation: a reasoning block is cut off first, so the scorer sees the final answer. A generation
    the run did not make (``not-run``) is not scored: no verdict, the reason in ``details.not_run``."""
    if gen.not_run is not None:
        return not_run_sample(battery.name, case.id, target.name, case.prompt, case.expected, gen,
                              ScorerRef(battery.scorer_name, dict(battery.scorer_args)))
    out = Output(gen.text, gen.finish_reason, gen.raw, gen.tokens, target.codec.markers)
    tk = target.codec.tk
    specials = [c for c, (_i, special) in tk.added_tokens.items() if special]
    opened = prompt_opens_reasoning(target.codec.prompt_text(case.messages, case.tools))
    answer, split = final_answer(out, opened, specials)
    score = battery.scorer(case, answer)
    details = dict(score.details)
    if split is not None:
        details.update(reasoning_details(split, answer.text, len(tk.encode(split.reasoning or ""))))
    if gen.raw != gen.text:
        details["raw_output"] = gen.raw
    if len(case.messages) > 1:
        details["messages"] = list(case.messages)
    return Sample(battery=battery.name, case=case.id, adapter=target.name, prompt=case.prompt, output=gen.text,
                  finish_reason=gen.finish_reason, tokens=gen.tokens, latency_s=gen.latency_s,
                  scorer=ScorerRef(battery.scorer_name, dict(battery.scorer_args)), passed=score.passed,
                  score=float(score.score), expected=case.expected, details=details)


def not_run_sample(battery: str, case: str, adapter: str, prompt: str, expected: Any, gen: Generation,
                   scorer: ScorerRef) -> Sample:
    """The record of a case the model was not let to answer: no output, no verdict, no score."""
    return Sample(battery=battery, case=case, adapter=adapter, prompt=prompt, output="", finish_reason=guard.NOT_RUN,
                  tokens=0, latency_s=gen.latency_s, scorer=scorer, passed=None, score=None, expected=expected,
                  details={"not_run": gen.not_run or "not generated"})


def build_results(plan: ProbePlan, samples: list[Sample], device: str, generated: int, cached: int,
                  cost: SessionCost | None = None, selection: str = "") -> Results:
    """A results file's content: the plan's columns and engine settings (with the session's ``cost`` when given),
    the samples and their metric rows, and, when a battery has fewer samples than the plan has cases for it (pytest
    ran a selection: ``selection`` says which), the ``partial`` record gates check."""
    extra = {b.name: b.metrics for b in plan.batteries if b.metrics}
    engine = _engine_info(plan, device, generated, cached)
    if cost is not None:
        engine.settings["session"] = cost.as_dict()
    reasons = Counter(s.not_run_reason for s in samples if not s.ran)
    if reasons:
        engine.settings["not_run"] = dict(reasons)  # why, and how many: nothing scored them
    return Results(created=datetime.now(timezone.utc).isoformat(timespec="seconds"), evalsuite_version=__version__,
                   engine=engine, adapters=[t.info for t in plan.targets],
                   samples=samples, metrics=compute_metrics(samples, extra) if samples else [],
                   partial=_partial(plan, samples, selection))


def _partial(plan: ProbePlan, samples: list[Sample], selection: str) -> dict[str, Any] | None:
    ran = Counter(s.battery for s in samples)
    short = {b.name: {"planned": len(b.cases) * len(plan.targets), "ran": ran[b.name]} for b in plan.batteries
             if ran[b.name] < len(b.cases) * len(plan.targets)}
    return {"batteries": short, "selection": selection or "a selection of the planned cases"} if short else None


def _engine_info(plan: ProbePlan, device: str, generated: int, cached: int) -> EngineInfo:
    from evalsuite.rundir.manifest import package_versions

    options, settings = plan.options, _settings(plan.options)
    max_new = {b.name: _max_new(b, options) for b in plan.batteries}
    recorded = {name: getattr(options, name) for name in engine_class(options.engine).recorded_options}
    return EngineInfo(name=options.engine, seed=settings.seed, max_new_tokens=max([*max_new.values()] or [1]),
                      settings={"batch_size": options.batch_size or "auto", "max_memory": options.max_memory,
                                "max_batch_seconds": settings.stall_seconds,
                                "stop_strings": list(settings.stop_strings), "device": device,
                                "max_new_tokens_per_battery": max_new, "generated": generated, "cached": cached,
                                "skipped_batteries": plan.skipped, "processes": parallel.world()[1], **recorded,
                                **_columns_info(plan), "versions": package_versions()})


def _columns_info(plan: ProbePlan) -> dict[str, Any]:
    """Per-column engine facts (a GGUF column's engine, template and stop tokens), when a column has any."""
    columns = {t.name: t.engine_info for t in plan.targets if t.engine_info}
    return {"columns": columns} if columns else {}


def run_probes(run_dirs: Iterable[str | Path], options: ProbeOptions, out: Path | None = None) -> ProbeRun:
    run = execute(plan_probes(run_dirs, options))
    if out is not None and parallel.is_main():  # data-parallel runs gather everything; rank 0 writes one file
        write_run(run.results, out, run.cache_dir)
    return run
