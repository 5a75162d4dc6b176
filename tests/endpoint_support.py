"""Servers for the endpoint tests, on 127.0.0.1 only.

- :class:`StubServer`: a scriptable OpenAI-compatible stub (``http.server`` in a thread, port 0) for status codes,
  bodies and hangs. Its default answer is the uppercase echo of the last user message with ``finish_reason: stop``
  (what the demo adapter learned), computed here independently of the code under test.
- :class:`LlamaServer`: llama-cpp-python's real OpenAI-compatible server (``python -m llama_cpp.server``) on a free
  loopback port, waited for by polling ``/v1/models`` with a deadline, stopped with terminate then kill. When it
  cannot start the test skips, or fails under ``EVALSUITE_REQUIRE_GGUF=1`` (CI).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gguf_support import THREADS, unavailable

Reply = tuple[int, bytes, dict[str, str]]  # (status, body, headers)
Behaviour = Callable[[int, dict[str, Any]], Reply | None]  # (request number, body) -> reply; None: the default


def completion(content: str, finish: str = "stop", tokens: int | None = None, **message: Any) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "model": "stub-model",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content, **message},
                                    "finish_reason": finish}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": tokens if tokens is not None
                                 else len(content.split()) + 1, "total_tokens": 2}}).encode()


def echo(body: dict[str, Any]) -> Reply:
    last = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
    return 200, completion(last.upper()), {}


class StubServer:
    """``with StubServer(behaviour) as s:`` serves ``s.url`` (``http://127.0.0.1:PORT/v1``); ``s.bodies`` holds the
    chat requests received, in order of arrival."""

    def __init__(self, behaviour: Behaviour | None = None, models: tuple[str, ...] = ("stub-model",),
                 key: str | None = None, routes: dict[str, Callable[[dict[str, Any]], Reply]] | None = None) -> None:
        self.behaviour = behaviour or (lambda n, body: None)
        self.routes = routes or {}  # other POST routes (llama.cpp's /apply-template)
        self.models, self.key = models, key
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> StubServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self) -> bool:
                if stub.key is None or self.headers.get("Authorization") == f"Bearer {stub.key}":
                    return True
                self._send(401, json.dumps({"error": {"message": "Invalid API key"}}).encode())
                return False

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                if self.path == "/v1/models":
                    data = [{"id": m, "object": "model", "owned_by": "stub", "created": time.time()}
                            for m in stub.models]
                    self._send(200, json.dumps({"object": "list", "data": data}).encode(), {"Server": "stub/1.0"})
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path in stub.routes:
                    self._send(*stub.routes[self.path](body))
                    return
                with stub.lock:
                    n = len(stub.bodies)
                    stub.bodies.append(body)
                    stub.headers.append(dict(self.headers.items()))
                if not self._authorised():
                    return
                if self.path != "/v1/chat/completions":
                    self._send(404, b'{"error": "not found"}')
                    return
                reply = stub.behaviour(n, body) or echo(body)
                status, payload, headers = reply
                if headers.get("X-Stub") == "truncate":  # announce more than is sent, then close
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload) + 100))
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if headers.get("X-Stub") == "hang":
                    time.sleep(float(headers["X-Seconds"]))
                    return
                self._send(status, payload, headers)

        return Handler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_server_package() -> None:
    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            unavailable(f"llama-cpp-python's server needs {module} (pip install 'llama-cpp-python[server]', part of "
                        "'evalsuite[gguf]')")


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server on ``model`` at 127.0.0.1:``port`` (a free one by default)."""

    def __init__(self, model: Path, log: Path, port: int | None = None, deadline: float = 120.0) -> None:
        self.model, self.log, self.port, self.deadline = model, log, port or free_port(), deadline
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LlamaServer:
        require_server_package()
        threads = THREADS["EVALSUITE_GGUF_THREADS"]
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--host", "127.0.0.1",
                "--port", str(self.port), "--n_threads", threads, "--n_threads_batch", threads, "--n_ctx", "2048",
                "--seed", "0"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
        end = time.monotonic() + self.deadline
        while time.monotonic() < end:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        unavailable(f"llama-cpp-python's server did not answer {self.url}/models within {self.deadline:g} s: {tail}")
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """The server dies as in a crash (SIGKILL, no clean shutdown)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def requests_seen(self) -> int:
        """Chat completions the server logged as answered."""
        return self.log.read_text(errors="replace").count("POST /v1/chat/completions HTTP/1.1\" 200")
