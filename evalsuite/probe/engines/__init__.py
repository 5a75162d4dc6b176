"""Generation engines: what the runner needs from one, how one is built, and which ones exist.

An engine turns (column, request) jobs into :class:`~evalsuite.probe.generation.Generation` records. The runner
knows engines only through :class:`Engine` and :class:`EngineSpec`: it builds one engine per base model from a spec
(the base, each column's prompt codec, the adapters to attach, the device and a few knobs) and hands it the jobs;
data-parallel probing (:mod:`evalsuite.probe.parallel`) asks it for one shard of its batch plan.

Engines are looked up by name in :data:`ENGINES`: the built-ins below, plus any installed package's entry points in
the ``evalsuite.engines`` group (``name = "package.module:EngineClass"``). A new engine is a class with this
constructor and these methods, and one line in :data:`BUILTIN`. Nothing heavy (torch, vLLM) is imported until an
engine is built.

What a run may cost is the runner's, not each engine's (:mod:`evalsuite.probe.guard`): an engine that decodes step
by step takes ``watch = settings.watch()`` per batch (or prompt), calls ``watch.token()`` on progress, stops when
``watch.stalled()`` is true and returns what it stopped with ``time_capped=True``; the runner retries those rows or
records them ``not-run``. An engine with batches of its own runs them through
:class:`~evalsuite.probe.guard.OomSplitter` (an out-of-memory batch split in halves) and honours
``settings.batch_size`` (the runner halves it for a retry; ``settings.auto_batch``: a cap for a memory plan).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

from evalsuite.errors import EvalsuiteError
from evalsuite.probe.generation import Generation, GenerationSettings, PromptCodec, Request
from evalsuite.registry import Registry

Job = tuple[str | None, Request]  # (adapter name of the column, None for the plain base; the request)

BUILTIN = {
    "hf": "evalsuite.probe.engines.hf:HFEngine",  # transformers + peft, the default
    "vllm": "evalsuite.probe.engines.vllm:VLLMEngine",  # multi-LoRA on CUDA: pip install 'evalsuite[vllm]'
    "gguf": "evalsuite.probe.engines.gguf:GGUFEngine",  # a .gguf column, llama.cpp: pip install 'evalsuite[gguf]'
    "endpoint": "evalsuite.probe.engines.endpoint:EndpointEngine",  # an http(s)://.../v1 column: OpenAI-compatible
}
ENTRY_POINT_GROUP = "evalsuite.engines"
ENGINES = Registry("engine", BUILTIN, ENTRY_POINT_GROUP)


class GenerationInterrupted(EvalsuiteError):
    """An engine stopped part way (an endpoint fault): ``done`` holds what it finished, by job index, so the runner
    caches those before the error reaches the user and a rerun generates only the rest."""

    def __init__(self, message: str, done: Mapping[int, Generation]) -> None:
        super().__init__(message)
        self.done = dict(done)

    def kept(self, total: int, saved: bool) -> str:
        """The message, with how many of ``total`` generations finished before the fault and where they are."""
        if not self.done:
            return f"{self}; nothing was generated"
        how = (f"kept in the generation cache: the same command sends only the {total - len(self.done)} missing"
               if saved else "not cached (--no-cache, or the cache could not be written)")
        return f"{self}; {len(self.done)} of {total} generation(s) finished before it, {how}"


@dataclass(frozen=True)
class EngineSpec:
    """What an engine is built from. One spec per base model: the columns that share it are served by one engine."""

    base_model: str  # a folder or a hub id
    codecs: Mapping[str | None, PromptCodec]  # how each column renders and classifies (None: the plain base)
    adapters: Mapping[str, Path] = field(default_factory=dict)  # adapter name -> dir, attached in this order
    device: str | None = None  # None: the engine's default (cuda when available)
    seed: int = 0
    allow_pickle: bool = False
    trust_remote_code: bool = False
    tensor_parallel_size: int = 1  # GPUs per model, for engines that split one (vllm); others ignore it
    # engine-specific extras (vllm: dtype, LLM arguments; endpoint: the column's URL, served model, concurrency)
    options: Mapping[str, Any] = field(default_factory=dict)

    def codec(self, adapter: str | None) -> PromptCodec:
        """The codec of a column: its own, else the base's."""
        return self.codecs.get(adapter) or self.codecs[None]

    def check(self, jobs: Sequence[Job]) -> None:
        """Every job's adapter is one of this engine's."""
        for adapter, _ in jobs:
            if adapter is not None and adapter not in self.adapters:
                raise EvalsuiteError(f"no adapter named {adapter!r} is loaded")


class Engine(Protocol):
    """What the runner and data-parallel probing call. Built as ``EngineClass(spec)``."""

    # ProbeOptions fields recorded in the results' engine settings beside the common ones (vllm:
    # tensor_parallel_size), so a results file says how its engine was configured.
    recorded_options: ClassVar[tuple[str, ...]]

    def generate_mixed(self, jobs: Sequence[Job], settings: GenerationSettings) -> list[Generation]:
        """One generation per job, in the order of ``jobs``: greedy, stopped and classified by the column's codec."""
        ...

    def generate_shard(self, jobs: Sequence[Job], settings: GenerationSettings, rank: int,
                       world: int) -> dict[int, Generation]:
        """The part of ``generate_mixed(jobs)`` that process ``rank`` of ``world`` runs, by job index. The shards of
        all ranks together are exactly ``generate_mixed(jobs)``. An engine with a batch plan shards whole batches
        (so a batch is the same in whichever process runs it); one that batches internally uses
        :func:`shard_by_prompt`."""
        ...


EngineFactory = Callable[[EngineSpec], Engine]  # an engine class is one; tests pass their own


def engine_class(name: str) -> type[Engine]:
    """The engine registered under ``name``; an unknown name is an error listing the known ones."""
    return cast("type[Engine]", ENGINES.load(name))


def check_engine_name(name: str, flag: str = "--engine") -> None:
    """Fail early, naming the option, when no engine is registered under ``name`` (nothing is imported)."""
    known = ENGINES.known()
    if name not in known:
        raise EvalsuiteError(f"{flag}: unknown engine {name!r}; known engines: {', '.join(sorted(known))}")


def shard_by_prompt(engine: Engine, jobs: Sequence[Job], settings: GenerationSettings, rank: int,
                    world: int) -> dict[int, Generation]:
    """``generate_shard`` for an engine without a batch plan of its own: job ``i`` runs in process ``i mod world``."""
    mine = list(range(rank, len(jobs), world))
    return dict(zip(mine, engine.generate_mixed([jobs[i] for i in mine], settings), strict=True))
