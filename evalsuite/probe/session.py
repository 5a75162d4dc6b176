"""A probe session: one plan, one engine per base model for the whole session, one generation cache, and each
column as a model a test can chat with (what the pytest plugin's ``probe_model`` fixture hands out).

The batteries (:func:`evalsuite.probe.runner.execute`) and users' own chats (:class:`ProbeModel`) go through the
same path, :func:`evalsuite.probe.runner.generate_cached`: the column's template and stop ids, the cache first,
then the session's engine. :class:`EnginePool` builds each base model's engine once, with every adapter of the plan
attached, so a session loads its base at most once whatever mix of battery items and user tests runs, and not at
all when the cache holds everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evalsuite.errors import EvalsuiteError
from evalsuite.probe import parallel
from evalsuite.probe.batteries import DEFAULT_MAX_NEW_TOKENS
from evalsuite.probe.cache import cache_root
from evalsuite.probe.engines import Engine, EngineFactory, EngineSpec
from evalsuite.probe.generation import Generation, Messages, Request
from evalsuite.probe.progress import SessionCost
from evalsuite.probe.runner import (
    ProbePlan,
    ProbeRun,
    Selection,
    Want,
    build_results,
    engine_spec,
    execute,
    generate_cached,
    registry_factory,
)
from evalsuite.probe.scorers import Output
from evalsuite.probe.targets import Target
from evalsuite.results.schema import Results, Sample

Prompt = str | Messages  # a user message, or a whole conversation ending in a user turn


@dataclass(frozen=True)
class Reply:
    """One generation of one column, as the batteries get it, with the conversation that produced it."""

    adapter: str  # the column name
    messages: tuple[dict[str, str], ...]
    generation: Generation
    markers: tuple[str, ...]  # the column's special tokens and role headers (what leakage checks look for)
    max_new_tokens: int
    stop: tuple[str, ...] = ()

    @property
    def prompt(self) -> str:
        """The last user message."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")

    @property
    def text(self) -> str:
        """The output, special tokens skipped, cut at the stop."""
        return self.generation.text

    @property
    def raw(self) -> str:
        """The same ids decoded with special tokens kept."""
        return self.generation.raw

    @property
    def finish_reason(self) -> str:
        """``eos``, ``stop-string``, ``max-tokens`` or ``new-turn``."""
        return self.generation.finish_reason

    @property
    def tokens(self) -> int:
        return self.generation.tokens

    @property
    def output(self) -> Output:
        """What a scorer sees of this reply."""
        return Output(self.text, self.finish_reason, self.raw, self.tokens, self.markers)


class EnginePool:
    """An engine factory that builds each base model's engine once, with every adapter of the plan attached, and
    hands the same engine out again (``loads`` counts the builds)."""

    def __init__(self, plan: ProbePlan, device: str, factory: EngineFactory) -> None:
        self.plan, self.device, self.factory = plan, device, factory
        self.engines: dict[str, Engine] = {}
        self.loads = 0

    def __call__(self, spec: EngineSpec) -> Engine:
        if spec.base_model not in self.engines:
            every = {t.name for t in self.plan.targets}
            self.engines[spec.base_model] = self.factory(engine_spec(self.plan, spec.base_model, self.device, every))
            self.loads += 1
        return self.engines[spec.base_model]


class ProbeSession:
    """The batteries and the columns' chats of one pytest session (or any caller), sharing engines and cache."""

    def __init__(self, plan: ProbePlan, engine: EngineFactory | None = None) -> None:
        self.plan = plan
        self.device = plan.options.device or parallel.default_device()
        self.pool = EnginePool(plan, self.device, engine or registry_factory(plan))
        self.keys: dict[str, str] = {}  # column -> cache key, computed once
        self.generated = self.cached = 0
        self.all_in_cache = True  # every generation so far is in the cache (a full disk can make it False)
        self.models = {t.name: ProbeModel(self, t) for t in plan.targets}
        self.run: ProbeRun | None = None
        self.cost = SessionCost()  # engine builds and generation, batteries and chats together

    def run_batteries(self, selected: Selection | None = None) -> ProbeRun:
        self.run = run = execute(self.plan, selected, self.pool, cost=self.cost)
        self.generated += run.generated
        self.cached += run.cached
        self.all_in_cache &= run.cache_dir is not None
        return run

    def generate(self, target: Target, requests: list[Request], stop: tuple[str, ...]) -> list[Generation]:
        stops = tuple(dict.fromkeys([*self.plan.options.stop_strings, *stop]))
        got = generate_cached(self.plan, [Want(target, r) for r in requests], self.device, self.pool, stops,
                              self.keys, self.cost)
        self.generated += got.generated
        self.cached += got.cached
        self.all_in_cache &= got.cache_dir is not None
        return got.generations

    def results(self, extra: Sequence[Sample] = (), selection: str = "") -> Results:
        """The battery samples of this session (if they ran) and ``extra`` ones, in one results file, with what the
        whole session cost (``engine.session``, as ``evalsuite probe`` records it); ``selection`` names what chose
        the cases when not all of them ran (the file is then marked partial)."""
        samples = [*(self.run.results.samples if self.run else []), *extra]
        return build_results(self.plan, samples, self.device, self.generated, self.cached, self.cost, selection)

    @property
    def cache_dir(self) -> Path | None:
        """Where every generation of this session is cached, or None when some are not (--no-cache, full disk)."""
        return cache_root(self.plan.options.cache_dir) if self.all_in_cache else None


@dataclass
class ProbeModel:
    """One column (an adapter, or the plain base) to chat with: ``chat`` one prompt, ``generate`` many in one pass.
    Replies are greedy, rendered with the column's training template, stopped on its stop ids, and cached."""

    session: ProbeSession = field(repr=False)
    target: Target = field(repr=False)
    history: list[Reply] = field(default_factory=list, repr=False)  # every reply, in order

    def __repr__(self) -> str:
        return f"ProbeModel({self.name!r}, {self.kind})"

    @property
    def name(self) -> str:
        """The column name, as in results and test ids."""
        return self.target.name

    @property
    def kind(self) -> str:
        """``adapter`` or ``base``."""
        return self.target.kind

    def chat(self, prompt: Prompt, *, max_new_tokens: int | None = None, stop: Sequence[str] = (),
             system: str | None = None) -> Reply:
        """The reply to a user message (or a conversation ending in a user turn); ``stop``: extra stop strings."""
        return self.generate([prompt], max_new_tokens=max_new_tokens, stop=stop, system=system)[0]

    def generate(self, prompts: Sequence[Prompt], *, max_new_tokens: int | None = None, stop: Sequence[str] = (),
                 system: str | None = None) -> list[Reply]:
        """The replies to many prompts, in order, generated in shared batches (what the cache lacks)."""
        if isinstance(prompts, str):
            raise EvalsuiteError("generate() takes a list of prompts; use chat() for one")
        max_new = (self.session.plan.options.max_new_tokens or DEFAULT_MAX_NEW_TOKENS) if max_new_tokens is None \
            else max_new_tokens
        if max_new < 1:
            raise EvalsuiteError(f"max_new_tokens: expected a positive integer, got {max_new}")
        stops = tuple(stop)
        conversations = [conversation(p, system) for p in prompts]
        gens = self.session.generate(self.target, [Request(m, max_new) for m in conversations], stops)
        replies = [Reply(self.name, m, g, self.target.codec.markers, max_new, stops)
                   for m, g in zip(conversations, gens, strict=True)]
        self.history.extend(replies)
        return replies


def conversation(prompt: Prompt, system: str | None = None) -> tuple[dict[str, str], ...]:
    """The messages of a prompt: a string is one user turn; a list of ``{role, content}`` ends in a user turn."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = [dict(m) for m in prompt]
        for i, m in enumerate(messages):
            if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise EvalsuiteError(f"messages[{i}]: expected {{'role': str, 'content': str}}, got {m!r}")
        if not messages or messages[-1]["role"] != "user":
            raise EvalsuiteError("messages: the conversation must end in a user turn (the model answers it)")
    if system is not None:
        messages = [{"role": "system", "content": system}, *messages]
    return tuple(messages)
