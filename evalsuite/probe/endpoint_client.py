"""A small client for OpenAI-compatible servers (llama.cpp's llama-server, llama-cpp-python's server, Ollama, vLLM,
TGI), on the standard library only: evalsuite gains no HTTP dependency for it.

Every way a request can fail ends in one :class:`EndpointError` that names the URL and says what to do: a host that
does not resolve, a refused connection, 401/403 (the key), 404 (the path or the model), 429 and 5xx (retried with
backoff first), a body that is not JSON or is cut short, a server that does not answer within the timeout, a
connection dropped mid-answer. The API key is read from an environment variable and sent as a bearer token; it is
never part of a message, a log line, a results file or a cache key (:meth:`EndpointClient.scrub` removes it from any
text a server echoes back).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from evalsuite.errors import EvalsuiteError

DEFAULT_KEY_ENV = "EVALSUITE_API_KEY"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_BODY = 64 * 2**20  # a chat completion is kilobytes; a server streaming without end is cut here
MAX_WAIT = 30.0  # seconds, the longest Retry-After honoured


class EndpointError(EvalsuiteError):
    """A request to the endpoint failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def is_url(arg: object) -> bool:
    """An ``http://`` or ``https://`` column (a path is never one)."""
    return isinstance(arg, str) and arg.lower().startswith(("http://", "https://"))


def server_root(url: str) -> str:
    """The server's root for its own (non-OpenAI) routes: ``http://h:p/v1`` -> ``http://h:p``."""
    base = url.rstrip("/")
    return base[:-3] if base.endswith("/v1") else base


@dataclass
class EndpointClient:
    url: str  # the API base, e.g. http://127.0.0.1:8080/v1
    timeout: float = 120.0  # seconds for one request to answer
    retries: int = 3  # extra tries on 429/5xx and dropped connections
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    key_env: str = DEFAULT_KEY_ENV
    _key: str | None = field(default=None, repr=False)
    last_headers: dict[str, str] = field(default_factory=dict, repr=False)  # of the last answer (its Server header)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EvalsuiteError(f"{self.url}: not an http(s) URL of an OpenAI-compatible API (like "
                                 "http://127.0.0.1:8080/v1)")
        self.url = self.url.rstrip("/")
        self._key = os.environ.get(self.key_env) or None

    @property
    def has_key(self) -> bool:
        return self._key is not None

    def scrub(self, text: str) -> str:
        """``text`` with the API key, wherever a server echoed it, replaced by ``***``."""
        return text.replace(self._key, "***") if self._key else text

    def get(self, path: str, root: bool = False, timeout: float | None = None) -> Any:
        return self.request("GET", path, None, root, timeout)

    def post(self, path: str, body: dict[str, Any], root: bool = False, timeout: float | None = None) -> Any:
        return self.request("POST", path, body, root, timeout)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, root: bool = False,
                timeout: float | None = None) -> Any:
        """The JSON answer of ``method path`` (under the API base, or the server's root), retrying 429/5xx and
        dropped connections with exponential backoff; any failure is one :class:`EndpointError`."""
        url = (server_root(self.url) if root else self.url) + path
        wait = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return self._once(method, url, body, timeout or self.timeout)
            except _Retry as e:
                if attempt == self.retries:
                    raise EndpointError(self.scrub(f"{url}: {e.why} (after {self.retries + 1} tries)"),
                                        e.status) from None
                time.sleep(min(e.after if e.after is not None else wait, MAX_WAIT))
                wait *= 2
        raise AssertionError("unreachable")

    def _once(self, method: str, url: str, body: dict[str, Any] | None, timeout: float) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json", **({"Content-Type": "application/json"} if data else {})}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read(MAX_BODY + 1)
                self.last_headers = dict(resp.headers.items())
                announced = resp.headers.get("Content-Length")
                if announced and announced.isdigit() and len(raw) < int(announced) <= MAX_BODY:
                    raise http.client.IncompleteRead(raw, int(announced) - len(raw))
        except urllib.error.HTTPError as e:
            raise self._status_error(url, e) from None
        except (http.client.RemoteDisconnected, ConnectionResetError, http.client.IncompleteRead) as e:
            raise _Retry(f"the server closed the connection mid-answer ({type(e).__name__}); did it crash or "
                         "restart?") from None
        except TimeoutError:
            raise EndpointError(f"{url}: no answer within {timeout:g} s (the request timeout; a hung or overloaded "
                                "server, or raise --endpoint-timeout)") from None
        except urllib.error.URLError as e:
            raise EndpointError(self.scrub(f"{url}: {_connection_problem(e.reason)}")) from None
        except OSError as e:
            raise EndpointError(self.scrub(f"{url}: {e}")) from None
        return self._json(url, raw)

    def _status_error(self, url: str, e: urllib.error.HTTPError) -> Exception:
        detail = _error_detail(e)
        if e.code in RETRY_STATUS:
            after = e.headers.get("Retry-After") if e.headers else None
            return _Retry(f"HTTP {e.code} {e.reason}{detail}", e.code,
                          float(after) if after and after.replace(".", "", 1).isdigit() else None)
        if e.code in (401, 403):
            how = (f"the key in ${self.key_env} was refused" if self._key
                   else f"no API key was sent: put it in ${self.key_env} (or name another variable with --api-key-env)")
            return EndpointError(self.scrub(f"{url}: HTTP {e.code} {e.reason}{detail}: {how}"), e.code)
        if e.code == 404:
            return EndpointError(self.scrub(f"{url}: HTTP 404 Not Found{detail}: is the URL the API base (ending in "
                                            "/v1) and the model one the server serves?"), 404)
        return EndpointError(self.scrub(f"{url}: HTTP {e.code} {e.reason}{detail}"), e.code)

    def _json(self, url: str, raw: bytes) -> Any:
        if len(raw) > MAX_BODY:
            raise EndpointError(f"{url}: the answer is larger than {MAX_BODY // 2**20} MiB")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            shown = self.scrub(raw[:120].decode("utf-8", errors="replace"))
            raise EndpointError(f"{url}: the answer is not JSON (malformed or cut short; {len(raw)} bytes, starting "
                                f"{shown!r}): is this an OpenAI-compatible server?") from None


class _Retry(Exception):
    def __init__(self, why: str, status: int | None = None, after: float | None = None) -> None:
        super().__init__(why)
        self.why, self.status, self.after = why, status, after


def _connection_problem(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused: is the server running, and on this port?"
    if isinstance(reason, socket.gaierror):
        return f"the host name does not resolve ({reason.strerror}): is the URL right?"
    if isinstance(reason, TimeoutError):
        return "the connection timed out: is the host reachable?"
    if isinstance(reason, OSError) and reason.strerror:
        return f"cannot connect ({reason.strerror})"
    return f"cannot connect ({reason})"


def _error_detail(e: urllib.error.HTTPError) -> str:
    """The server's own error message, when its body carries one (OpenAI's ``{"error": {"message": ...}}``)."""
    try:
        body = json.loads(e.read(4096).decode("utf-8", errors="replace"))
    except (OSError, ValueError):
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    if message is None and isinstance(body, dict):
        message = body.get("detail") or body.get("message")
    return f" ({str(message)[:300]})" if message else ""
