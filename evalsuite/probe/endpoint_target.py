"""An OpenAI-compatible endpoint as a probe column: ``evalsuite probe RUN_DIR model.gguf http://HOST:PORT/v1``
probes what users talk to beside what was trained and what was exported.

The server renders the chat with its own template and stops where it stops; evalsuite sends the battery's messages
(and tools) and reads back text and ``finish_reason``. Building the column asks the server, cheaply and once, what it
serves: ``/v1/models`` (the served model's id, checked against ``--served-model``), the ``Server`` header, and
llama.cpp's ``/props`` where the server has it (its build). Those facts are the column's provenance and, with the URL,
its cache key: a rerun against the same server and model sends only what the cache lacks.

The column has no tokenizer of its own. For what scoring reads of one (the special tokens and role headers whose
appearance in an answer is a leak) it borrows the training column's, else a GGUF column's; probed alone it has none.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.chat.template import CHATML
from evalsuite.chat.tokenizer import SPECIAL_NAMES, BackendAddedToken, BackendEncoding, TokenizerInfo
from evalsuite.errors import EvalsuiteError
from evalsuite.files import sha256_text
from evalsuite.probe.endpoint_client import EndpointClient, EndpointError
from evalsuite.probe.generation import Messages, PromptCodec, Tools
from evalsuite.probe.targets import Target
from evalsuite.results.schema import AdapterInfo

PROBE_TIMEOUT = 15.0  # seconds for the cheap questions asked while planning (/v1/models, /props)


class EndpointCodec(PromptCodec):
    """The server renders: a prompt is the messages and tools themselves (canonical JSON, the cache's prompt key)."""

    def prompt_text(self, messages: Messages, tools: Tools = ()) -> str:
        return json.dumps({"messages": list(messages), "tools": list(tools)}, sort_keys=True, ensure_ascii=False)

    def prompt_ids(self, messages: Messages, tools: Tools = ()) -> list[int]:
        raise EvalsuiteError("an endpoint column is rendered and tokenized by its server")




class _NoVocab:
    """The tokenizer of an endpoint probed with no local column: no special tokens; lengths counted in words."""

    def token_to_id(self, token: str) -> int | None:
        return None

    def encode(self, text: str, add_special_tokens: bool = False) -> BackendEncoding:
        return BackendEncoding(list(range(len(text.split()))))

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return ""

    def get_added_tokens_decoder(self) -> dict[int, BackendAddedToken]:
        return {}

    def get_vocab_size(self, with_added_tokens: bool = True) -> int:
        return 0


def _codec(reference: PromptCodec | None, reference_from: str) -> tuple[EndpointCodec, str]:
    if reference is not None:
        return EndpointCodec(reference.tk, reference.template, list(reference.stop_ids),
                             set(reference.turn_start_ids), reference.headers), reference_from
    tk = TokenizerInfo(path=Path("."), tokenizer=_NoVocab(), chat_template=None,
                       special=dict.fromkeys(SPECIAL_NAMES))
    return EndpointCodec(tk, CHATML, [], set(), ()), "none (probed without a run dir: no leak markers)"


@dataclass
class EndpointTarget(Target):
    """A column served over HTTP: its cache key is the server's identity, not local files."""

    def fingerprint(self, device: str, seed: int,
                    base_fp: Callable[[str, str | None], dict[str, Any]]) -> dict[str, Any]:
        facts = self.engine_info or {}
        return {"endpoint": {k: facts.get(k) for k in ("url", "served_model", "model_entry", "server")},
                "seed": seed, "markers": list(self.codec.markers)}


@dataclass(frozen=True)
class EndpointSettings:
    served_model: str | None = None
    concurrency: int = 4
    timeout: float = 120.0
    key_env: str = "EVALSUITE_API_KEY"


def served_model(client: EndpointClient, wanted: str | None) -> dict[str, Any]:
    """The ``/v1/models`` entry of the model to probe: ``wanted``, or the only one served."""
    listing = client.get("/models", timeout=min(client.timeout, PROBE_TIMEOUT))
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
        raise EndpointError(f"{client.url}/models: not an OpenAI model list ({{\"data\": [{{\"id\": ...}}]}})")
    ids = [m["id"] for m in data]
    if wanted is None:
        if len(ids) != 1:
            raise EvalsuiteError(f"{client.url}: the server serves {len(ids)} models ({', '.join(ids) or 'none'}); "
                                 "name one with --served-model")
        return dict(data[0])
    for m in data:
        if wanted in (m["id"], Path(m["id"]).name):
            return dict(m)
    raise EndpointError(f"{client.url}: --served-model {wanted!r} is not served here; it serves: "
                        f"{', '.join(ids) or 'no model'}", 404)


def server_facts(client: EndpointClient) -> dict[str, Any]:
    """What the server says it is: the HTTP ``Server`` header, and llama.cpp's build from ``/props``."""
    facts: dict[str, Any] = {"header": client.last_headers.get("Server") or client.last_headers.get("server")}
    try:
        props = client.get("/props", root=True, timeout=min(client.timeout, PROBE_TIMEOUT))
    except EvalsuiteError:
        return facts
    if isinstance(props, dict) and props.get("build_info"):
        facts.update(name="llama.cpp", version=str(props["build_info"]))
    return facts


def endpoint_column(url: str, name: str, settings: EndpointSettings, reference: PromptCodec | None,
                    base: str | None, reference_from: str = "the run dir's tokenizer") -> EndpointTarget:
    client = EndpointClient(url, timeout=settings.timeout, key_env=settings.key_env)
    entry = served_model(client, settings.served_model)
    server = server_facts(client)
    codec, markers = _codec(reference, reference_from)
    model_entry = {k: v for k, v in entry.items() if k != "created"}  # some servers stamp the request time there
    facts = {"engine": "endpoint", "url": client.url, "served_model": entry["id"], "model_entry": model_entry,
             "server": server, "concurrency": settings.concurrency, "timeout_s": settings.timeout,
             "api_key_env": settings.key_env, "markers_from": markers}
    hashes: dict[str, str | None] = {"weights": None, "adapter_config": None,
                                     "template": sha256_text(json.dumps(model_entry, sort_keys=True)),
                                     "tokenizer": None}
    provenance = {"kind": "endpoint", "url": client.url, "served_model": entry["id"], "server": server,
                  "template": {"from": "the server, which renders the chat", "file": client.url},
                  "markers": markers}
    info = AdapterInfo(name=name, kind="endpoint", base_model=base or client.url, path=client.url, source="endpoint",
                       external=True, provenance=provenance)
    # The engine key: one engine per URL and served model.
    return EndpointTarget(name, "endpoint", None, None, f"{client.url}#{entry['id']}", codec, info, hashes,
                          engine="endpoint", engine_info=facts)


def endpoint_columns(urls: Sequence[str], columns: Sequence[Target],
                     settings: EndpointSettings) -> list[EndpointTarget]:
    """One column per URL, named ``endpoint-MODEL`` (``@host:port`` added when two would clash). Beside the other
    ``columns``: the base model they record (the run dirs', else the GGUF's), and for the leak markers the training
    column's tokenizer, else the first column's."""
    if len(set(u.rstrip("/") for u in urls)) != len(urls):
        raise EvalsuiteError("the same endpoint URL is given twice")
    source = next((t for t in columns if t.kind == "adapter"), columns[0] if columns else None)
    base = columns[0].info.base_model if columns else None
    taken = {t.name for t in columns}
    out: list[EndpointTarget] = []
    for url in urls:
        column = endpoint_column(url, "endpoint", settings, source.codec if source else None, base,
                                 f"the tokenizer of column {source.name}" if source else "")
        model = str(column.engine_info["served_model"]).rstrip("/").rsplit("/", 1)[-1] if column.engine_info else ""
        name = f"endpoint-{model}"
        if name in taken or any(t.name == name for t in out) or len(urls) > 1:
            name = f"{name}@{urllib.parse.urlsplit(url).netloc}"
        column.name = column.info.name = name
        out.append(column)
    return out
