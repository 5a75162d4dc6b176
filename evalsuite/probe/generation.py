"""Generation: render prompts exactly as training did, generate in batches, and say why each generation ended.

:class:`PromptCodec` renders conversations with evalsuite's sandboxed renderer and the run dir's template (the one
the adapter was trained with), and classifies the generated ids: ``eos`` (a stop token: the tokenizer's eos, the
generation config's ``eos_token_id``, the template's end-of-turn token), ``new-turn`` (a token that opens a role
header, such as ``<|im_start|>`` or ``<|start_header_id|>``: the model ran into the next turn, the seeds'
``HELLO<|im_start|>assistant``), ``stop-string`` (a configured text stop), or ``max-tokens`` (no stop within the
new-token or wall-time budget: a runaway, recorded as a result rather than an error).

:class:`HFEngine` (transformers + peft) loads the base once, attaches N LoRA adapters (peft multi-adapter) and
decodes greedily in batches that mix columns: each row names its adapter (``__base__`` for the plain base), so one
pass serves every adapter and the base, which is what makes N adapters in one session cheaper than N sessions.
Prompts are sorted by length and left-padded with an attention mask; decoding
(:mod:`evalsuite.probe.engines.decode`) uses the KV cache, drops rows as they stop, and honours a wall-time cap per
batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from evalsuite.chat.template import render
from evalsuite.chat.tokenizer import TokenizerInfo
from evalsuite.errors import EvalsuiteError
from evalsuite.probe.engines.decode import greedy_decode

FINISH_REASONS = ("eos", "stop-string", "max-tokens", "new-turn")
ROLE_WORDS = ("system", "user", "assistant", "model")
Messages = Sequence[dict[str, str]]


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 64
    batch_size: int = 64
    seed: int = 0
    max_batch_seconds: float | None = 120.0
    stop_strings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    text: str  # special tokens skipped, cut at the stop
    finish_reason: str
    tokens: int  # new tokens the model produced, the terminating one included
    latency_s: float  # the batch's wall time shared out over its prompts
    raw: str  # the same ids decoded with special tokens kept (terminator excluded), for leakage checks
    time_capped: bool = False


@dataclass(frozen=True)
class Request:
    """One prompt for one column (adapter name, or None for the plain base)."""

    messages: tuple[dict[str, str], ...]
    max_new_tokens: int


class Generator(Protocol):
    def generate(self, requests: Sequence[Request], adapter: str | None,
                 settings: GenerationSettings) -> list[Generation]: ...


@dataclass
class PromptCodec:
    """One tokenizer + one template: renders prompts, classifies and decodes generated ids."""

    tk: TokenizerInfo
    template: str
    stop_ids: list[int]
    turn_start_ids: set[int] = field(default_factory=set)
    headers: tuple[str, ...] = ()

    @classmethod
    def build(cls, tk: TokenizerInfo, template: str, stop_ids: Sequence[int]) -> PromptCodec:
        starts, headers = role_headers(tk, template)
        stops = list(dict.fromkeys([*stop_ids, *(i for i in [tk.token_id(tk.eos_token)] if i is not None)]))
        return cls(tk, template, stops, starts, headers)

    def prompt_text(self, messages: Messages) -> str:
        return render(self.template, messages, add_generation_prompt=True,
                      special_tokens=self.tk.template_variables()).text

    def prompt_ids(self, messages: Messages) -> list[int]:
        return self.tk.encode(self.prompt_text(messages), add_special_tokens=False)

    @property
    def generation_stop_ids(self) -> list[int]:
        """Ids that end generation: stops and turn starts (a new turn is classified, then cut)."""
        return sorted({*self.stop_ids, *self.turn_start_ids})

    @property
    def markers(self) -> tuple[str, ...]:
        """Strings that must never appear in an answer: the tokenizer's special tokens and the role headers."""
        specials = tuple(c for c, (_i, special) in self.tk.added_tokens.items() if special)
        return tuple(dict.fromkeys([*specials, *self.headers]))

    def finish(self, ids: Sequence[int], stop_strings: Sequence[str] = ()) -> tuple[list[int], str, int]:
        """Cut generated ids at the first stop; return (kept ids, finish reason, tokens produced)."""
        for i, t in enumerate(ids):
            if t in self.turn_start_ids:  # checked first: a template may also list it as an end of turn
                return list(ids[:i]), "new-turn", i + 1
            if t in self.stop_ids:
                return list(ids[:i]), "eos", i + 1
        kept = list(ids)
        if stop_strings:
            text = self.tk.decode(kept)
            cuts = [(text.index(s), s) for s in stop_strings if s in text]
            if cuts:
                at, _s = min(cuts)
                prefix = text[:at]
                n = next((k for k in range(len(kept) + 1) if len(self.tk.decode(kept[:k])) >= len(prefix)),
                         len(kept))
                return kept[:n], "stop-string", len(kept)
        return kept, "max-tokens", len(kept)

    def decode(self, ids: list[int]) -> tuple[str, str]:
        """(text with special tokens skipped, raw text with them kept)."""
        return self.tk.decode(ids, skip_special_tokens=True), self.tk.decode(ids, skip_special_tokens=False)


def role_headers(tk: TokenizerInfo, template: str) -> tuple[set[int], tuple[str, ...]]:
    """Special tokens that open a role turn, and the rendered header strings, found by rendering a probe chat.

    A special token opens a turn when a role name follows it (``<|im_start|>user``, ``<|start_header_id|>user``,
    ``<start_of_turn>model``) or when it names a role itself (Phi-3's ``<|user|>``, ``<|assistant|>``).
    """
    a, b = "\u2063a\u2063", "\u2063b\u2063"
    chat = [{"role": "user", "content": a}, {"role": "assistant", "content": b}, {"role": "user", "content": a}]
    text = ""
    for messages in ([{"role": "system", "content": b}, *chat], chat):  # some templates refuse a system turn
        try:
            text = render(template, messages, add_generation_prompt=True, special_tokens=tk.template_variables()).text
            break
        except EvalsuiteError:
            continue
    specials = {c: i for c, (i, special) in tk.added_tokens.items() if special}
    starts: set[int] = set()
    headers: list[str] = []
    for content, tid in specials.items():
        pos = text.find(content)
        while pos >= 0:
            rest = text[pos + len(content):]
            names_role = any(r in content.lower() for r in ROLE_WORDS)
            if names_role or rest.lstrip(" ").lower().startswith(ROLE_WORDS):
                starts.add(tid)
                newline = rest.find("\n")
                headers.append(content if names_role or not 0 <= newline <= 40 else content + rest[:newline + 1])
            pos = text.find(content, pos + 1)
    return starts, tuple(dict.fromkeys(h for h in headers if a not in h and b not in h))


class HFEngine:
    """transformers + peft. ``adapters`` maps a column name to an adapter dir; ``None`` selects the plain base."""

    def __init__(self, base_model: str, codecs: dict[str | None, PromptCodec], adapters: dict[str, Path] | None = None,
                 device: str | None = None, allow_pickle: bool = False, trust_remote_code: bool = False) -> None:
        import torch

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.float32 if self.device == "cpu" else torch.bfloat16
        self.base_model = base_model
        self.codecs = codecs
        self.adapters = dict(adapters or {})
        with quiet_libraries():
            model = _load_base(base_model, self.dtype, allow_pickle, trust_remote_code)
            for i, (name, path) in enumerate(self.adapters.items()):
                model = _attach(model, name, path, base_model, first=i == 0)
        self.model = model.to(self.device).eval()

    def generate(self, requests: Sequence[Request], adapter: str | None,
                 settings: GenerationSettings) -> list[Generation]:
        """Generations for one column, in the order of ``requests``."""
        return self.generate_mixed([(adapter, r) for r in requests], settings)

    def generate_mixed(self, jobs: Sequence[tuple[str | None, Request]],
                       settings: GenerationSettings) -> list[Generation]:
        """Generations for (column, request) pairs, in order, in one pass over every column: a column's rows fill
        batches together (sorted by prompt length), and columns share a batch where one would otherwise be short
        (peft's mixed-adapter batches: each row through its own adapter, ``__base__`` through none); a batch never
        mixes different ``max_new_tokens`` or stop-token sets."""
        out = self.generate_shard(jobs, settings, 0, 1)
        return [out[i] for i in range(len(jobs))]

    def generate_shard(self, jobs: Sequence[tuple[str | None, Request]], settings: GenerationSettings, rank: int,
                       world: int) -> dict[int, Generation]:
        """The batches ``k`` with ``k % world == rank`` of the plan ``generate_mixed`` runs, by job index: the unit
        data-parallel probing shards (``evalsuite.probe.parallel``), so a batch is the same in whichever process runs
        it."""
        for adapter, _ in jobs:
            if adapter is not None and adapter not in self.adapters:
                raise EvalsuiteError(f"no adapter named {adapter!r} is loaded")
        codecs = [self.codecs.get(a) or self.codecs[None] for a, _ in jobs]
        encoded = [c.prompt_ids(r.messages) for c, (_, r) in zip(codecs, jobs, strict=True)]
        groups = [(r.max_new_tokens, tuple(c.generation_stop_ids)) for c, (_, r) in zip(codecs, jobs, strict=True)]
        # Same settings together, then one column after another, shortest prompts first: batches hold one adapter
        # whenever a column fills them (the cheap path), and mix columns only when rows would otherwise be few.
        column = {a: k for k, a in enumerate(dict.fromkeys(a for a, _ in jobs))}
        order = sorted(range(len(jobs)), key=lambda i: (groups[i], column[jobs[i][0]], len(encoded[i])))
        out: dict[int, Generation] = {}
        for k, batch in enumerate(_batches(order, groups, settings.batch_size)):
            if k % world != rank:
                continue
            gens = self._batch([encoded[i] for i in batch], [jobs[i][0] for i in batch], [codecs[i] for i in batch],
                               jobs[batch[0]][1].max_new_tokens, settings)
            out.update(zip(batch, gens, strict=True))
        return out

    def _batch(self, prompts: list[list[int]], adapters: list[str | None], codecs: list[PromptCodec], max_new: int,
               settings: GenerationSettings) -> list[Generation]:
        torch = self.torch
        width = max(len(p) for p in prompts)
        pad = codecs[0].tk.token_id(codecs[0].tk.pad_token)
        pad = pad if pad is not None else codecs[0].stop_ids[0]
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        names, route = self._route(adapters)
        torch.manual_seed(settings.seed)
        with torch.inference_mode(), quiet_libraries(), route:
            decoded = greedy_decode(self.model, ids, mask, max_new, set(codecs[0].generation_stop_ids), names,
                                    settings.max_batch_seconds)
        elapsed, capped = decoded.seconds, decoded.capped
        results = []
        for row, codec in zip(decoded.rows, codecs, strict=True):
            kept, reason, produced = codec.finish(row, settings.stop_strings)
            text, raw = codec.decode(kept)
            results.append(Generation(text, reason, produced, elapsed / len(prompts), raw,
                                      time_capped=capped and reason == "max-tokens"))
        return results


    def _route(self, adapters: list[str | None]) -> tuple[list[str] | None, Any]:
        """How a batch reaches its adapters: one adapter -> ``set_adapter`` (no per-call hooks); only the base ->
        adapters disabled; several -> peft's per-row ``adapter_names`` (hooks on every LoRA layer, ~1.6x per step)."""
        if not self.adapters:
            return None, contextlib.nullcontext()
        if len(set(adapters)) > 1:
            return [a or "__base__" for a in adapters], contextlib.nullcontext()
        if adapters[0] is None:
            return None, self.model.disable_adapter()
        self.model.set_adapter(adapters[0])
        return None, contextlib.nullcontext()


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence library chatter that is noise in a probe run (weight-loading progress bars, bitsandbytes' optional
    CPU kernel notice, deprecation warnings, the "exceeded the model's maximum length" reminder on long SQuAD
    prompts), and restore the caller's settings afterwards."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    bnb = logging.getLogger("bitsandbytes")
    bnb_level = bnb.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    bnb.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        bnb.setLevel(bnb_level)


def _batches(order: list[int], groups: Sequence[Any], size: int) -> Iterator[list[int]]:
    """Consecutive runs of ``order`` of at most ``size`` whose ``groups`` agree."""
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) >= size or groups[i] != groups[batch[0]]):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _load_base(base_model: str, dtype: Any, allow_pickle: bool, trust_remote_code: bool) -> Any:
    from transformers import AutoModelForCausalLM

    path = Path(base_model)
    if path.is_dir() and not any(path.glob("*.safetensors")) and any(path.glob("*.bin")) and not allow_pickle:
        raise EvalsuiteError(f"{path}: base model weights are pickles (*.bin), which can run code when loaded; "
                             "pass --allow-pickle if you trust them")
    try:
        return AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype, trust_remote_code=trust_remote_code,
                                                    use_safetensors=None if allow_pickle else True)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvalsuiteError(f"{base_model}: cannot load the base model: {first}") from None


def _attach(model: Any, name: str, path: Path, base_model: str, first: bool) -> Any:
    """Attach one adapter; a shape mismatch (an adapter trained on another base) is one clear error."""
    from peft import PeftModel

    try:
        if first:
            return PeftModel.from_pretrained(model, str(path), adapter_name=name)
        model.load_adapter(str(path), adapter_name=name)
        return model
    except (RuntimeError, ValueError, KeyError, OSError) as e:
        detail = " ".join(str(e).split())
        if "size mismatch" in detail:
            at = detail.index("size mismatch")
            detail = detail[at:at + 240]
        raise EvalsuiteError(f"{path}: adapter {name!r} does not fit the base model {base_model} "
                             f"(trained for another base?): {detail[:300]}") from None
