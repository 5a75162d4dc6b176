"""Drift at the serving layer: ``evalsuite drift RUN_DIR --endpoint URL``.

The same batteries through the run dir (HF, its training template and stops) and the served endpoint, paired case by
case (:mod:`evalsuite.drift.dynamic`): agreement of greedy outputs and of finish reasons, flips. Two checks say why
they differ:

- the template, where the server shows its rendering (llama.cpp's llama-server: ``POST /apply-template``): each
  battery conversation rendered by the server against the training render. A server without such a route (Ollama,
  vLLM, llama-cpp-python's server) gets a note saying the check was not possible, never a silent pass;
- the stop: where the run dir ends its answer (the trained end of turn, or a turn header) and the endpoint runs on to
  its token budget, the server does not stop on what training stops on: the seeds' runaway. The finding names the
  trained end of turn and the turn header the endpoint ran into.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evalsuite.chat.encode import end_of_turn_token
from evalsuite.chat.template import TemplateRaised, render
from evalsuite.drift.findings import Finding, first_difference
from evalsuite.drift.static import Messages, SourceSide
from evalsuite.errors import EvalsuiteError
from evalsuite.probe.endpoint_client import EndpointClient, server_root
from evalsuite.probe.generation import PromptCodec
from evalsuite.results.schema import Results, Sample

MAX_LISTED = 5
RAN_ON = ("eos", "new-turn")  # the run dir ended its answer ...
RUNAWAY = "max-tokens"  # ... and the endpoint did not


@dataclass
class TemplateCheck:
    findings: list[Finding]
    note: str | None = None  # why the check was not possible


def template_check(client: EndpointClient, src: SourceSide, conversations: Sequence[Messages]) -> TemplateCheck:
    """The server's rendering (llama.cpp's ``/apply-template``) of each conversation against the training render."""
    differing, example = 0, ""
    for i, messages in enumerate(conversations):
        try:
            served = client.post("/apply-template", {"messages": [dict(m) for m in messages]}, root=True)
        except EvalsuiteError as e:
            if i == 0:
                why = "HTTP 404" if getattr(e, "status", None) == 404 else str(e)
                return TemplateCheck([], "template check not possible: the server does not show its rendering "
                                         f"(llama-server's POST {server_root(client.url)}/apply-template: "
                                         f"{why})")
            raise
        prompt = served.get("prompt") if isinstance(served, dict) else None
        if not isinstance(prompt, str):
            return TemplateCheck([], "template check not possible: /apply-template answered without a prompt string")
        try:
            trained = render(src.template, messages, add_generation_prompt=True,
                             special_tokens=src.tk.template_variables()).text
        except TemplateRaised as e:
            raise EvalsuiteError(f"{src.path}: the training template fails on a battery conversation: {e}") from None
        if _without_bos(trained, src) != _without_bos(prompt, src):
            differing += 1
            example = example or first_difference(trained, prompt)
    if not differing:
        return TemplateCheck([])
    return TemplateCheck([Finding("endpoint-template-differs",
                                  f"{differing}/{len(conversations)} battery conversations render differently on the "
                                  f"server (training vs served) {example}; serve the training template (llama-server "
                                  "--jinja --chat-template-file chat_template.jinja, Ollama's Modelfile TEMPLATE, "
                                  "vllm serve --chat-template)")])


def _without_bos(text: str, src: SourceSide) -> str:
    """A leading BOS written by the template is the tokenizer's business (the GGUF checks cover it), not drift."""
    bos = src.tk.bos_token
    return text[len(bos):] if bos and text.startswith(bos) else text


def stop_finding(results: Results, source: str, endpoint: str, codec: PromptCodec) -> Finding | None:
    """The cases where the run dir ends its answer and the endpoint runs to its token budget, with the turn header
    the endpoint ran into (the first found in what it wrote past the run dir's answer)."""
    by_case = {(s.battery, s.case): s for s in results.samples if s.adapter == source}
    ran: list[tuple[Sample, Sample, str | None]] = []
    for ep in results.samples:
        src = by_case.get((ep.battery, ep.case))
        if ep.adapter != endpoint or src is None or src.finish_reason not in RAN_ON or ep.finish_reason != RUNAWAY:
            continue
        ran.append((src, ep, header_in(continuation(src.output, ep.output), codec)))
    if not ran:
        return None
    paired = sum(s.adapter == endpoint for s in results.samples)
    eot = end_of_turn_token(codec.template, codec.tk) or codec.tk.eos_token
    eot_id = codec.tk.token_id(eot)
    headers = [h for _, _, h in ran if h is not None]
    into = (f", into the turn header {max(set(headers), key=headers.count)!r} ({len(headers)} of them)"
            if headers else "")
    eos = sum(s.finish_reason == "eos" for s, _, _ in ran)
    message = (f"the server does not stop where training stops: in {len(ran)} of {paired} cases the run dir ends its "
               f"answer ({eos} on the trained end of turn {eot!r}" + (f" (id {eot_id})" if eot_id is not None else "")
               + f", {len(ran) - eos} at a turn header) and the endpoint runs on to max-tokens{into}. The server "
               f"stops on other tokens than training: make it stop on {eot!r} (the GGUF's eos/eot, Ollama's "
               f"Modelfile PARAMETER stop, vLLM's generation_config.json eos_token_id)")
    examples = [f"{s.battery}[{s.case}]: run dir {s.output[:40]!r} ({s.finish_reason}) vs endpoint "
                f"{e.output[:80]!r}" for s, e, _ in ran[:MAX_LISTED]]
    return Finding("endpoint-no-stop", message, examples=examples)


def continuation(source: str, served: str) -> str:
    """What the endpoint wrote past the run dir's answer (all of it when they part earlier)."""
    return served[len(source):] if served.startswith(source) else served


def header_in(text: str, codec: PromptCodec) -> str | None:
    """The first role header in ``text``: written out (``<|im_start|>assistant``), or at its very start as servers
    print it, special tokens dropped (llama-cpp-python's server answered ``helloassistanthello`` for the seeds'
    runaway: no ``<|im_start|>``, and the newline the header ends with not there either)."""
    specials = [c for c, (_i, special) in codec.tk.added_tokens.items() if special]
    hits = [(text.index(h), h) for h in codec.headers if h in text]
    if hits:
        return min(hits)[1]
    head = text.lstrip()
    for h in codec.headers:
        visible = h
        for s in specials:
            visible = visible.replace(s, "")
        if visible.strip() and head.startswith(visible.strip()):
            return h
    return None


def served_column(results: Results) -> tuple[str, str]:
    """(source column, endpoint column) of a paired run."""
    source = next(a.name for a in results.adapters if a.kind != "endpoint")
    endpoint = next(a.name for a in results.adapters if a.kind == "endpoint")
    return source, endpoint
