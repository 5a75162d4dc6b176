"""`evalsuite drift RUN_DIR --endpoint URL` against loopback stubs, on the trained demo adapter: the paired run, the
template check where the server shows its rendering (and a note where it does not), and a server that does not stop
where training stops, named with the turn header it ran into. The real llama-cpp-python server is in
test_endpoint_server.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_cli
from endpoint_support import StubServer, completion

TIMEOUT = 300


def last_user(body: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


def chatml(messages: list[dict[str, str]]) -> str:
    """The demo's ChatML rendering, written out here (not by evalsuite's renderer)."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def drift(source: Path, url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("drift", source, "--endpoint", url, "--battery", "runaway-turns", "--format", "json", *extra,
                   timeout=TIMEOUT)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def rules(report: dict[str, Any]) -> set[str]:
    return {f["rule"] for f in report["findings"]}


def test_a_server_that_runs_past_the_end_of_turn_is_named_with_the_header(demo_adapter: Path) -> None:
    def runaway(n: int, body: dict[str, Any]) -> Any:
        answer = last_user(body).upper()  # what the adapter says, then the next turn, as servers print it
        return 200, completion(f"{answer}\nassistant\n{answer}\nassistant\n", "length"), {}

    with StubServer(runaway) as stub:
        code, report = drift(demo_adapter, stub.url)
    assert code == 1 and "endpoint-no-stop" in rules(report)
    finding = next(f for f in report["findings"] if f["rule"] == "endpoint-no-stop")
    assert "'<|im_end|>'" in finding["message"] and "'<|im_start|>assistant\\n'" in finding["message"]
    assert report["dynamic"]["columns"]["endpoint"].startswith("endpoint-")
    assert any("template check not possible" in n for n in report["notes"])  # the stub has no /apply-template


def test_a_server_that_stops_like_training_has_no_stop_finding(demo_adapter: Path, tmp_path: Path) -> None:
    rendered: list[str] = []

    def apply(body: dict[str, Any]) -> Any:
        rendered.append(chatml(body["messages"]))
        return 200, json.dumps({"prompt": rendered[-1]}).encode(), {}

    with StubServer(routes={"/apply-template": apply}) as stub:
        _, report = drift(demo_adapter, stub.url, "--out", str(tmp_path / "paired.json"))
    assert "endpoint-no-stop" not in rules(report) and "endpoint-template-differs" not in rules(report)
    assert rendered and report["notes"] == []  # the template was checked, on every battery conversation
    assert report["dynamic"]["cases"] > 0 and 0 <= report["dynamic"]["agreement"] <= 1


def test_a_server_with_another_template_is_reported(demo_adapter: Path) -> None:
    def apply(body: dict[str, Any]) -> Any:
        text = "".join(f"{m['role']}: {m['content']}\n" for m in body["messages"]) + "assistant: "
        return 200, json.dumps({"prompt": text}).encode(), {}

    with StubServer(routes={"/apply-template": apply}) as stub:
        code, report = drift(demo_adapter, stub.url, "--static-only")
    assert code == 1 and rules(report) == {"endpoint-template-differs"}
    assert report["dynamic"] is None


@pytest.mark.parametrize("args", [(), ("demo.gguf", "--endpoint", "http://127.0.0.1:1/v1")])
def test_gguf_or_endpoint_one_of_them(args: tuple[str, ...], demo_adapter: Path) -> None:
    done = run_cli("drift", demo_adapter, *args, "--static-only", timeout=TIMEOUT)
    assert done.returncode == 2 and "one of them" in done.stderr
