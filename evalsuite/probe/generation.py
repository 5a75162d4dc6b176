"""What generation means to the probe, whatever the engine: prompts rendered exactly as training did, requests and
settings, and why each generation ended.

:class:`PromptCodec` renders conversations with evalsuite's sandboxed renderer and the run dir's template (the one
the adapter was trained with), and classifies the generated ids: ``eos`` (a stop token: the tokenizer's eos, the
generation config's ``eos_token_id``, the template's end-of-turn token), ``new-turn`` (a token that opens a role
header, such as ``<|im_start|>`` or ``<|start_header_id|>``: the model ran into the next turn, the seeds'
``HELLO<|im_start|>assistant``), ``stop-string`` (a configured text stop), or ``max-tokens`` (no stop within the
new-token budget: the model used its whole budget, a runaway, recorded as a result rather than an error). A
generation the stall guard stopped is not a model result: the runner retries it or records it as ``not-run``
(:mod:`evalsuite.probe.guard`).

The engines that turn requests into generations live in :mod:`evalsuite.probe.engines`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalsuite.chat.template import ROLE_WORDS, render
from evalsuite.chat.tokenizer import TokenizerInfo
from evalsuite.errors import EvalsuiteError
from evalsuite.probe.stall import StallGuard, Watch

Messages = Sequence[dict[str, str]]
Tools = Sequence[dict[str, Any]]  # tool declarations, passed to the template as ``tools=`` (empty: none)


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 64
    batch_size: int = 64  # the batch size; with ``auto_batch`` the largest one the memory plan may choose
    seed: int = 0
    stall_seconds: float | None = 120.0  # no new token for this long: the engine is stalled (None: never)
    stop_strings: tuple[str, ...] = ()
    auto_batch: bool = False  # batch sizes planned from memory (--batch-size auto), at most ``batch_size``
    max_memory: str | None = None  # the plan's budget as --max-memory spells it: 2G, 40% (None: the default)
    # Called by engines as generations finish (per batch, or once at the end for engines that batch internally)
    # with the (column adapter name, generation) pairs just done: the probe's progress bar. Not a setting of the
    # generations themselves, so it takes no part in comparisons.
    progress: Callable[[Sequence[tuple[str | None, Generation]]], None] | None = field(default=None, compare=False)
    # The stall rule of the pass (evalsuite.probe.guard), set by the runner; engines only call :meth:`watch`.
    guard: StallGuard | None = field(default=None, compare=False)

    def watch(self) -> Watch:
        """The stall clock of one batch or prompt: ``token()`` on new tokens, stop when ``stalled()``."""
        return (self.guard or StallGuard(self.stall_seconds)).watch()


@dataclass(frozen=True)
class Generation:
    text: str  # special tokens skipped, cut at the stop
    finish_reason: str
    tokens: int  # new tokens the model produced, the terminating one included
    latency_s: float  # the batch's wall time shared out over its prompts
    raw: str  # the same ids decoded with special tokens kept (terminator excluded), for leakage checks
    time_capped: bool = False  # the engine stopped it for the stall guard: not a model result (retried or not run)
    not_run: str | None = None  # finish_reason "not-run": why, in one line naming the option (never cached)


@dataclass(frozen=True)
class Request:
    """One prompt for one column (adapter name, or None for the plain base)."""

    messages: tuple[dict[str, str], ...]
    max_new_tokens: int
    tools: tuple[dict[str, Any], ...] = ()  # an engine renders with ``codec.prompt_ids(r.messages, r.tools)``


@dataclass
class PromptCodec:
    """One tokenizer + one template: renders prompts, classifies and decodes generated ids."""

    tk: TokenizerInfo
    template: str
    stop_ids: list[int]
    turn_start_ids: set[int] = field(default_factory=set)
    headers: tuple[str, ...] = ()
    context: int | None = None  # the model's context window in tokens (its config), when known

    @classmethod
    def build(cls, tk: TokenizerInfo, template: str, stop_ids: Sequence[int],
              context: int | None = None) -> PromptCodec:
        starts, headers = role_headers(tk, template)
        stops = list(dict.fromkeys([*stop_ids, *(i for i in [tk.token_id(tk.eos_token)] if i is not None)]))
        return cls(tk, template, stops, starts, headers, context)

    def prompt_text(self, messages: Messages, tools: Tools = ()) -> str:
        """The prompt as ``apply_chat_template(messages, tools=tools or None, add_generation_prompt=True)``;
        a prompt longer than the model's context is an error (every engine's prompt passes here before a batch)."""
        text = render(self.template, messages, add_generation_prompt=True, tools=list(tools) or None,
                      special_tokens=self.tk.template_variables()).text
        self._check_fits(text, messages)
        return text

    def _check_fits(self, text: str, messages: Messages) -> None:
        """Refuse, before anything is generated, a prompt past :func:`evalsuite.config.limits.prompt_limit` tokens: a 1M
        character prompt otherwise runs attention over a quarter of a million positions. Tokenized only when it
        may be too long (a token is at least one byte, a character at most four)."""
        from evalsuite.config.limits import prompt_limit

        limit = prompt_limit(self.context)
        if len(text) * 4 <= limit:
            return
        n = len(self.tk.encode(text, add_special_tokens=False))
        if n > limit:
            first = next((str(m.get("content") or "") for m in messages if m.get("role") == "user"), "")
            raise EvalsuiteError(f"a prompt of {n:,} tokens (user message {first[:40]!r}...) is longer than the "
                                 f"{limit:,} tokens this model takes ({_context_text(self.context)}); shorten it")

    def prompt_ids(self, messages: Messages, tools: Tools = ()) -> list[int]:
        return self.tk.encode(self.prompt_text(messages, tools), add_special_tokens=False)

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


def _context_text(context: int | None) -> str:
    from evalsuite.config.limits import MIN_PROMPT_LIMIT

    if context is None:
        return "its config gives no context length"
    if context < MIN_PROMPT_LIMIT:
        return f"its config's context length is {context:,}, raised to the floor of {MIN_PROMPT_LIMIT:,}"
    return "its config's context length"


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
