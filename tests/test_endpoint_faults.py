"""An OpenAI-compatible endpoint as a probe column, against a loopback stub (tests/endpoint_support.py): what is sent,
how answers map onto finish reasons, and every fault as one clear error with nothing lost. No model is loaded: the
stub answers with the uppercase echo, so these run in seconds. Every CLI call runs under a time limit."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import call_main
from endpoint_support import StubServer, completion, free_port

from evalsuite.probe.batteries import load_battery, resolve_batteries
from evalsuite.probe.engines.endpoint import to_generation
from evalsuite.results.io import load_results

KEY = "sk-test-0123456789abcdef"
TIMEOUT = 120


def battery(name: str) -> Any:
    (path,) = resolve_batteries([name])
    return load_battery(path)


def probe(url: str, tmp_path: Path, *extra: str, name: str = "uppercase-echo") -> int:
    return call_main(["probe", url, "--battery", name, "--out", str(tmp_path / "results.json"), *extra],
                     timeout=TIMEOUT)


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def only_error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = error_lines(capsys)
    assert len(lines) == 1, lines
    return lines[0]


def test_requests_are_greedy_chat_completions_with_the_batterys_budget(tmp_path: Path) -> None:
    with StubServer() as stub:
        assert probe(stub.url, tmp_path, "--seed", "7") == 0
    cases = battery("uppercase-echo").cases
    assert len(stub.bodies) == len(cases)
    sent = sorted(json.dumps(b["messages"]) for b in stub.bodies)
    assert sent == sorted(json.dumps([dict(m) for m in c.messages]) for c in cases)
    budget = battery("uppercase-echo").max_new_tokens
    assert all(b["temperature"] == 0 and b["seed"] == 7 and b["max_tokens"] == budget and b["model"] == "stub-model"
               and "tools" not in b and "stop" not in b for b in stub.bodies)
    results = load_results(tmp_path / "results.json")
    (column,) = results.adapters
    assert column.kind == "endpoint" and column.path == stub.url
    assert column.provenance is not None and column.provenance["served_model"] == "stub-model"
    assert column.provenance["server"]["header"] == "stub/1.0"
    expected = {c.id: next(m["content"] for m in reversed(c.messages) if m["role"] == "user").upper() for c in cases}
    assert {s.case: s.output for s in results.samples} == expected
    assert {s.finish_reason for s in results.samples} == {"eos"}


def test_tools_are_sent_where_the_battery_declares_them(tmp_path: Path) -> None:
    calls = {"tool_calls": [{"id": "c", "type": "function",
                             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}
    with StubServer(lambda n, body: (200, completion("", "tool_calls", **calls), {})) as stub:
        probe(stub.url, tmp_path, name="tool-calls")
    cases = battery("tool-calls").cases
    assert len(stub.bodies) == len(cases) and all(c.tools for c in cases)
    assert sorted(json.dumps(b["tools"]) for b in stub.bodies) == sorted(json.dumps(list(c.tools)) for c in cases)
    sample = load_results(tmp_path / "results.json").samples[0]
    assert sample.finish_reason == "eos" and json.loads(sample.output) == [
        {"name": "get_weather", "arguments": {"city": "Paris"}}]


@pytest.mark.parametrize(("reason", "text", "stops", "want"), [
    ("stop", "HELLO", (), ("HELLO", "eos")),
    ("length", "HELLO HELLO", (), ("HELLO HELLO", "max-tokens")),
    ("length", "HELLO\nUser: hi", ("\nUser:",), ("HELLO", "stop-string")),
    ("stop", "HELLO\nUser: hi", ("\nUser:",), ("HELLO\nUser: hi", "eos")),  # like every engine: a stop id wins
])
def test_finish_reasons_map_onto_evalsuites(reason: str, text: str, stops: tuple[str, ...],
                                            want: tuple[str, str]) -> None:
    gen = to_generation(json.loads(completion(text, reason, tokens=9)), stops, 0.1)
    assert (gen.text, gen.finish_reason, gen.tokens) == (*want, 9)


def test_a_rerun_sends_nothing_and_a_new_served_model_everything(tmp_path: Path) -> None:
    with StubServer(models=("a", "b")) as stub:
        assert probe(stub.url, tmp_path, "--served-model", "a") == 0
        first = len(stub.bodies)
        assert probe(stub.url, tmp_path, "--served-model", "a") == 0
        assert len(stub.bodies) == first  # all from the cache
        assert probe(stub.url, tmp_path, "--served-model", "b") == 0
        assert len(stub.bodies) == 2 * first and {b["model"] for b in stub.bodies[first:]} == {"b"}


def test_refused_connection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert probe(url, tmp_path) == 2
    line = only_error(capsys)
    assert url in line and "connection refused" in line
    assert not (tmp_path / "results.json").exists()


def test_unresolvable_host(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*args: Any, **kwargs: Any) -> Any:  # no packet leaves the machine
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    assert probe("http://model-server.invalid:8080/v1", tmp_path) == 2
    assert "does not resolve" in only_error(capsys)


def test_api_key_comes_from_the_environment_and_is_written_nowhere(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with StubServer(key=KEY) as stub:
        monkeypatch.delenv("EVALSUITE_API_KEY", raising=False)
        assert probe(stub.url, tmp_path) == 2
        line = only_error(capsys)
        assert "HTTP 401" in line and "no API key was sent" in line and "$EVALSUITE_API_KEY" in line
        monkeypatch.setenv("MY_KEY", "sk-wrong")
        assert probe(stub.url, tmp_path, "--api-key-env", "MY_KEY") == 2
        assert "the key in $MY_KEY was refused" in only_error(capsys)
        monkeypatch.setenv("MY_KEY", KEY)
        assert probe(stub.url, tmp_path, "--api-key-env", "MY_KEY") == 0
    assert all(h.get("Authorization") == f"Bearer {KEY}" for h in stub.headers[-3:])
    out = capsys.readouterr()
    cache_root = Path(os.environ["EVALSUITE_CACHE"])  # the session's fresh cache (the root conftest sets it)
    written = [(tmp_path / "results.json").read_text(), out.out, out.err,
               *(p.read_text(errors="replace") for p in cache_root.rglob("*.json"))]
    assert all(KEY not in text for text in written)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_statuses(status: int, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSUITE_API_KEY", KEY)
    echoed = json.dumps({"error": {"message": f"key {KEY} is not allowed"}}).encode()  # a server echoing the key
    with StubServer(lambda n, body: (status, echoed, {})) as stub:
        assert probe(stub.url, tmp_path) == 2
    line = only_error(capsys)
    assert f"HTTP {status}" in line and "$EVALSUITE_API_KEY was refused" in line
    assert KEY not in line and "key *** is not allowed" in line


def test_unknown_served_model_lists_the_served_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with StubServer(models=("qwen", "llama")) as stub:
        assert probe(stub.url, tmp_path, "--served-model", "mistral") == 2
        line = only_error(capsys)
        assert "'mistral' is not served here" in line and "qwen, llama" in line
        assert probe(stub.url, tmp_path) == 2  # two served, none named
        assert "--served-model" in only_error(capsys)
        assert stub.bodies == []  # nothing was generated


def test_404_on_the_chat_route(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with StubServer(lambda n, body: (404, b'{"error": {"message": "model not found"}}', {})) as stub:
        assert probe(stub.url, tmp_path) == 2
    line = only_error(capsys)
    assert "HTTP 404" in line and "model not found" in line and "/chat/completions" in line


def test_500_is_retried_then_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with StubServer(lambda n, body: (500, b'{"error": {"message": "CUDA out of memory"}}', {})) as stub:
        assert probe(stub.url, tmp_path, "--concurrency", "1") == 2
    line = only_error(capsys)
    assert "HTTP 500" in line and "CUDA out of memory" in line and "after 4 tries" in line
    assert len(stub.bodies) == 4  # the first prompt, tried 4 times; the rest never sent
    assert "0 of" not in line and "nothing was generated" in line


def test_429_is_retried_and_the_run_completes(tmp_path: Path) -> None:
    busy = (429, b'{"error": "slow down"}', {"Retry-After": "0"})
    with StubServer(lambda n, body: busy if n == 0 else None) as stub:
        assert probe(stub.url, tmp_path, "--concurrency", "1") == 0
    assert len(stub.bodies) == len(battery("uppercase-echo").cases) + 1


@pytest.mark.parametrize(("reply", "expected"), [
    ((200, b"<html>Bad Gateway</html>", {}), "not JSON"),
    ((200, b'{"choices": [{"message": {"content": "HI"', {}), "not JSON"),  # cut short, length consistent
    ((200, b'{"choices": [{"message": {"content": "HI"}}]}', {"X-Stub": "truncate"}), "closed the connection"),
    ((200, b'{"object": "list", "data": []}', {}), "not a chat completion"),
    ((200, completion("HI", "banana"), {}), "finish_reason 'banana'"),
])
def test_malformed_or_truncated_bodies(reply: tuple[int, bytes, dict[str, str]], expected: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with StubServer(lambda n, body: reply) as stub:
        assert probe(stub.url, tmp_path, "--concurrency", "1") == 2
    line = only_error(capsys)
    assert expected in line and stub.url in line


def test_a_hung_server_times_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hang = (200, b"", {"X-Stub": "hang", "X-Seconds": "5"})
    with StubServer(lambda n, body: hang) as stub:
        assert probe(stub.url, tmp_path, "--endpoint-timeout", "0.5", "--concurrency", "2") == 2
    line = only_error(capsys)
    assert "no answer within 0.5 s" in line and "--endpoint-timeout" in line
    assert len(stub.bodies) == 2  # the two in flight; the rest were cancelled, not sent
    assert not (tmp_path / "results.json").exists()  # nothing the server did not answer was scored


def test_generations_before_a_fault_are_cached_and_a_rerun_sends_only_the_rest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    total = len(battery("uppercase-echo").cases)
    state = {"broken": True}

    def flaky(n: int, body: dict[str, Any]) -> Any:
        return (503, b'{"error": "overloaded"}', {}) if state["broken"] and n >= 7 else None

    with StubServer(flaky) as stub:
        assert probe(stub.url, tmp_path, "--concurrency", "1") == 2
        line = only_error(capsys)
        assert "HTTP 503" in line and f"7 of {total} generation(s) finished before it" in line
        assert f"sends only the {total - 7} missing" in line
        sent_first = {json.dumps(b["messages"]) for b in stub.bodies[:7]}
        state["broken"] = False
        before = len(stub.bodies)
        assert probe(stub.url, tmp_path, "--concurrency", "3") == 0
        resent = {json.dumps(b["messages"]) for b in stub.bodies[before:]}
    assert len(stub.bodies) - before == total - 7 and not resent & sent_first
    results = load_results(tmp_path / "results.json")
    assert results.engine.settings["cached"] == 7 and results.engine.settings["generated"] == total - 7
    assert len(results.samples) == total


def test_bad_endpoint_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert probe("http://127.0.0.1:1/v1", tmp_path, "--concurrency", "0") == 2
    assert "--concurrency: expected a positive integer" in only_error(capsys)
    assert probe("http://127.0.0.1:1/v1", tmp_path, "--api-key-env", KEY + "!") == 2  # the key itself, by mistake
    line = only_error(capsys)
    assert "expected the name of an environment variable" in line and KEY not in line
    assert probe("http://127.0.0.1:1/v1", tmp_path, "--endpoint-timeout", "0") == 2
    assert "--endpoint-timeout: expected seconds > 0" in only_error(capsys)


def test_greedy_means_no_repetition_penalty_and_a_strict_server_gets_the_standard_fields(tmp_path: Path) -> None:
    def strict(n: int, body: dict[str, Any]) -> Any:
        extra = sorted(k for k in body if k in ("repeat_penalty", "repetition_penalty"))
        if extra:
            return 400, json.dumps({"error": {"message": f"Unrecognized request argument supplied: {extra[0]}"}}
                                   ).encode(), {}
        return None

    with StubServer(strict) as stub:
        assert probe(stub.url, tmp_path, "--concurrency", "1") == 0
    first, *rest = stub.bodies
    assert first["repeat_penalty"] == 1.0 and first["repetition_penalty"] == 1.0
    assert first["frequency_penalty"] == 0 and first["presence_penalty"] == 0
    assert rest and all("repeat_penalty" not in b and b["frequency_penalty"] == 0 for b in rest)
    assert len(rest) == len(battery("uppercase-echo").cases)  # asked once more, then never again
