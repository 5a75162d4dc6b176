"""The endpoint drift check's pieces on hand-made results (no model, no server): where the served answer runs past
the run dir's, which turn header it ran into (written out, or printed without its special tokens as servers do),
and the finding that names the trained end of turn."""

from __future__ import annotations

import pytest
from evalsuite.fixtures.tiny_model import tiny_tokenizer_dir

from evalsuite.chat.tokenizer import load_tokenizer
from evalsuite.drift.endpoint import continuation, header_in, stop_finding
from evalsuite.probe.endpoint_client import EndpointClient, is_url, server_root
from evalsuite.probe.generation import PromptCodec
from evalsuite.results.schema import AdapterInfo, EngineInfo, Results, Sample, ScorerRef

CHATML = ("{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
          "{%- endif %}")


@pytest.fixture(scope="module")
def codec() -> PromptCodec:
    tk = load_tokenizer(tiny_tokenizer_dir())
    return PromptCodec.build(tk, CHATML, [tk.token_id("<|im_end|>") or 2])


def results(pairs: list[tuple[tuple[str, str], tuple[str, str]]]) -> Results:
    """(run dir output, finish), (endpoint output, finish) per case."""
    samples = []
    for i, (src, served) in enumerate(pairs):
        for name, (out, finish) in (("run", src), ("endpoint-x", served)):
            samples.append(Sample(battery="b", case=f"c{i}", adapter=name, prompt=f"p{i}", output=out,
                                  finish_reason=finish, tokens=3, latency_s=0.1, scorer=ScorerRef("stops", {}),
                                  passed=finish == "eos", score=1.0))
    return Results(created="t", evalsuite_version="0", engine=EngineInfo("hf", 0, 8),
                   adapters=[AdapterInfo("run", "adapter", "tiny"), AdapterInfo("endpoint-x", "endpoint", "tiny")],
                   samples=samples, metrics=[])


@pytest.mark.parametrize(("text", "header"), [
    ("assistant\nHELLO", "<|im_start|>assistant\n"),  # a server prints <|im_start|> as nothing
    ("assistanthello", "<|im_start|>assistant\n"),  # ... and no newline (llama-cpp-python, the seeds' runaway)
    ("\n user\nhi", "<|im_start|>user\n"),
    ("HI<|im_start|>user\nxx", "<|im_start|>user\n"),  # written out, anywhere
    (" AND MORE TEXT", None),
    ("the assistant said", None),  # a role word inside text is not a header
])
def test_header_in(text: str, header: str | None, codec: PromptCodec) -> None:
    assert header_in(text, codec) == header


def test_continuation() -> None:
    assert continuation("HELLO", "HELLOassistant\n") == "assistant\n"
    assert continuation("HELLO", "HI THERE") == "HI THERE"


def test_stop_finding_names_the_end_of_turn_and_the_header(codec: PromptCodec) -> None:
    found = stop_finding(results([
        (("HELLO", "eos"), ("HELLOassistant\nHELLOassistant\n", "max-tokens")),
        (("HI", "new-turn"), ("HIassistant\nHI", "max-tokens")),
        (("LOOP LOOP", "max-tokens"), ("LOOP LOOP LOOP", "max-tokens")),  # ran on in both: not the server's doing
        (("OK", "eos"), ("OK", "eos")),
    ]), "run", "endpoint-x", codec)
    assert found is not None and found.rule == "endpoint-no-stop" and found.severity == "error"
    assert "in 2 of 4 cases" in found.message and "1 on the trained end of turn '<|im_end|>' (id 2)" in found.message
    assert "1 at a turn header" in found.message
    assert "into the turn header '<|im_start|>assistant\\n' (2 of them)" in found.message
    assert len(found.examples) == 2 and found.examples[0].startswith("b[c0]")


def test_no_stop_finding_when_the_server_stops_like_training(codec: PromptCodec) -> None:
    assert stop_finding(results([(("HELLO", "eos"), ("HELLO", "eos")),
                                 (("A B", "max-tokens"), ("A B", "max-tokens"))]), "run", "endpoint-x", codec) is None


def test_urls() -> None:
    assert is_url("http://127.0.0.1:8080/v1") and is_url("HTTPS://h/v1") and not is_url("runs/http")
    assert server_root("http://h:1/v1/") == "http://h:1" and server_root("http://h:1/api") == "http://h:1/api"
    assert EndpointClient("http://h:1/v1/").url == "http://h:1/v1"
    with pytest.raises(Exception, match="not an http"):
        EndpointClient("http:///v1")
