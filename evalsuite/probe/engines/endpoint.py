"""The endpoint engine: an OpenAI-compatible server's chat completions as a probe column.

One request per prompt: the battery's messages (and its tools, where it declares them), greedy (``temperature: 0``,
the run's ``seed``), the battery's token budget as ``max_tokens``. Greedy also means no repetition penalty: the
OpenAI penalties are sent as 0, and the servers' own knobs as neutral (:data:`NEUTRAL`: llama-cpp-python's server
applies ``repeat_penalty`` 1.1 at temperature 0 unless told otherwise, measured to change 24 of 32 answers of
SmolLM2; vLLM reads ``repetition_penalty`` from the model's generation config). A server that refuses those
non-standard fields (400/422 naming one) is asked again without them. Stop strings are not sent: like every engine here,
the generation runs to the model's own stop or the budget and the stop strings are cut afterwards, so the finish
reasons mean the same in every column. The API's ``finish_reason`` maps onto ours: ``stop`` -> ``eos`` (the server
stopped on an end-of-generation token), ``length`` -> ``max-tokens`` (or ``stop-string`` when a stop string is in the
text), ``tool_calls`` -> ``eos`` with the calls kept in the output as JSON (what the tool_call scorer parses).

Requests run ``concurrency`` at a time (a thread each; the server queues or batches them). A fault (see
:mod:`evalsuite.probe.endpoint_client`) stops the run: the requests not yet sent are cancelled, the ones in flight
finish, and :class:`~evalsuite.probe.engines.GenerationInterrupted` carries every generation received so far to the
runner, which caches them before the one error reaches the user, so a rerun sends only what is missing. A request
that times out is such a fault: it is never turned into a generation, so nothing the server did not answer is scored.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, ClassVar

from evalsuite.errors import EvalsuiteError
from evalsuite.probe.endpoint_client import EndpointClient, EndpointError
from evalsuite.probe.engines import EngineSpec, GenerationInterrupted, Job, shard_by_prompt
from evalsuite.probe.generation import Generation, GenerationSettings, Request

# Non-OpenAI sampling fields that default to a penalty on some servers: llama.cpp / llama-cpp-python / Ollama
# (``repeat_penalty``), vLLM (``repetition_penalty``). 1.0 is no penalty.
NEUTRAL = {"repeat_penalty": 1.0, "repetition_penalty": 1.0}


class EndpointEngine:
    recorded_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        o = spec.options
        self.model = str(o["served_model"])
        self.concurrency = int(o.get("concurrency", 4))
        self._fault = threading.Event()
        self.neutral: dict[str, float] = dict(NEUTRAL)  # emptied when the server refuses these fields
        self.client = EndpointClient(str(o["url"]), timeout=float(o.get("timeout_s", 120.0)),
                                     key_env=str(o.get("api_key_env", "EVALSUITE_API_KEY")))

    def generate_mixed(self, jobs: Sequence[Job], settings: GenerationSettings) -> list[Generation]:
        self.spec.check(jobs)
        self._fault = threading.Event()  # set by the request that fails: the workers send nothing more
        done: dict[int, Generation] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="evalsuite-endpoint") as pool:
            futures: dict[Future[Generation], int] = {
                pool.submit(self._one, request, settings): i for i, (_, request) in enumerate(jobs)}
            pending: set[Future[Generation]] = set(futures)
            fault: BaseException | None = None
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for f in finished:
                        if f.cancelled() or isinstance(f.exception(), _NotSent):
                            continue
                        if f.exception() is not None:
                            fault = fault or f.exception()
                            continue
                        done[futures[f]] = gen = f.result()
                        if settings.progress is not None:
                            settings.progress([(jobs[futures[f]][0], gen)])
                    if fault is not None:
                        self._stop(pending)  # the ones in flight finish (or fail) on their own
            except BaseException:  # Ctrl-C: send nothing more, wait only for the requests in flight
                self._stop(pending)
                raise
        if fault is not None:
            message = str(fault) if isinstance(fault, EvalsuiteError) else f"{self.client.url}: {fault!r}"
            raise GenerationInterrupted(self.client.scrub(message), done)
        return [done[i] for i in range(len(jobs))]

    def _stop(self, pending: set[Future[Generation]]) -> None:
        self._fault.set()
        for f in pending:
            f.cancel()

    def generate_shard(self, jobs: Sequence[Job], settings: GenerationSettings, rank: int,
                       world: int) -> dict[int, Generation]:
        return shard_by_prompt(self, jobs, settings, rank, world)

    def _one(self, request: Request, settings: GenerationSettings) -> Generation:
        if self._fault.is_set():
            raise _NotSent
        try:
            return self._ask(request, settings)
        except BaseException:
            self._fault.set()
            raise

    def _ask(self, request: Request, settings: GenerationSettings) -> Generation:
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in request.messages],
                                "max_tokens": request.max_new_tokens, "temperature": 0, "seed": settings.seed,
                                "frequency_penalty": 0, "presence_penalty": 0, "stream": False}
        if request.tools:
            body["tools"] = [dict(t) for t in request.tools]
        t0 = time.perf_counter()
        try:
            answer = self.client.post("/chat/completions", {**body, **self.neutral})
        except EndpointError as e:
            if e.status not in (400, 422) or not self.neutral or not any(k in str(e) for k in self.neutral):
                raise
            self.neutral = {}  # a strict server (OpenAI's own): the standard fields only
            answer = self.client.post("/chat/completions", body)
        return to_generation(answer, settings.stop_strings, time.perf_counter() - t0, self.client.url)


class _NotSent(Exception):
    """A request skipped because another one failed first."""


def to_generation(answer: Any, stop_strings: Sequence[str], latency: float, url: str = "") -> Generation:
    """One chat-completion answer as a :class:`Generation`, its ``finish_reason`` mapped onto evalsuite's."""
    choice = _first_choice(answer, url)
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise EndpointError(f"{url}/chat/completions: the answer's choices[0] has no message object")
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    reason = choice.get("finish_reason")
    usage = answer.get("usage") if isinstance(answer.get("usage"), Mapping) else {}
    tokens = usage.get("completion_tokens")
    tokens = tokens if isinstance(tokens, int) and tokens >= 0 else len(text.split())
    if reason == "tool_calls" or (message.get("tool_calls") and reason == "stop"):
        calls = _tool_calls(message.get("tool_calls"), url)
        text = (text + ("\n" if text else "") + json.dumps(calls, ensure_ascii=False)) if calls else text
        return Generation(text, "eos", tokens, latency, text)
    if reason == "stop":
        return Generation(text, "eos", tokens, latency, text)
    if reason == "length":
        cuts = [(text.index(s), s) for s in stop_strings if s in text]
        if cuts:
            kept = text[:min(cuts)[0]]
            return Generation(kept, "stop-string", tokens, latency, kept)
        return Generation(text, "max-tokens", tokens, latency, text)
    raise EndpointError(f"{url}/chat/completions: finish_reason {reason!r} is not one of stop, length, tool_calls "
                        "(an OpenAI-compatible server says why each answer ended)")


def _first_choice(answer: Any, url: str) -> Mapping[str, Any]:
    choices = answer.get("choices") if isinstance(answer, Mapping) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        shown = json.dumps(answer)[:160] if not isinstance(answer, str) else answer[:160]
        raise EndpointError(f"{url}/chat/completions: not a chat completion (no choices[0]): {shown}")
    return choices[0]


def _tool_calls(calls: Any, url: str) -> list[dict[str, Any]]:
    """The calls as ``[{"name": ..., "arguments": {...}}]``; arguments the server sends as a JSON string are parsed
    (kept as the string when they are not JSON: the scorer then reports them)."""
    out = []
    for call in calls if isinstance(calls, list) else []:
        fn = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(fn, Mapping):
            raise EndpointError(f"{url}/chat/completions: a tool call without a function object: {call!r}"[:300])
        args = fn.get("arguments")
        if isinstance(args, str):
            with contextlib.suppress(ValueError):
                args = json.loads(args)
        out.append({"name": fn.get("name"), "arguments": args})
    return out
