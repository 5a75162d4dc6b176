"""One chat message or tool list of a dataset row, validated and kept in the shape ``apply_chat_template`` expects.

Besides ``role`` and ``content`` a message keeps every other key, as ``apply_chat_template`` passes them: templates
read ``tool_calls``, ``tool_call_id``, ``name``, the reasoning fields (``reasoning_content``, ``thinking``,
``reasoning``), and model-specific ones (GLM-4's ``metadata``, Phi-4-mini's system ``tools``). The fields evalsuite
understands are validated; OpenAI's per-message ``weight`` (0: context only) is honoured in the labels. ``content`` is
a string, a list of text parts (``[{"type": "text", "text": ...}]``) or null when the message carries tool calls.
Tool call arguments are kept as the data has them (an object, or OpenAI's JSON string), as transformers passes them.
Every error names the row and the field (``conversations[3].value``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from evalsuite.config.limits import InputLimit, loads_json
from evalsuite.errors import EvalsuiteError

Message = dict[str, Any]
Tools = tuple[dict[str, Any], ...]

TEXT_FIELDS = ("tool_call_id", "name", "reasoning_content", "thinking", "reasoning")
MISSING = object()


def _got(value: Any) -> str:
    return "missing" if value is MISSING else f"got {json.dumps(value, ensure_ascii=False)[:60]}"


def expect_str(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise EvalsuiteError(f"{where}: {field}: expected a string, {_got(value)}")
    return value


def _parts(value: list[Any], where: str, field: str) -> list[dict[str, Any]]:
    for j, part in enumerate(value):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise EvalsuiteError(f"{where}: {field}[{j}]: expected a content part "
                                 f"{{\"type\": \"text\", \"text\": ...}}, {_got(part)}")
        if part["type"] != "text":
            raise EvalsuiteError(f"{where}: {field}[{j}].type: only text parts are supported, got {part['type']!r}")
        expect_str(part.get("text", MISSING), where, f"{field}[{j}].text")
    return [dict(p) for p in value]


def content_value(value: Any, where: str, field: str, nullable: bool) -> str | list[dict[str, Any]] | None:
    """A message's content: a string, a list of text parts, or (``nullable``: the message has tool calls) null."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return _parts(value, where, field)
    if nullable and (value is None or value is MISSING):
        return None
    want = "a string or a list of text parts" + (" (or null)" if nullable else "")
    raise EvalsuiteError(f"{where}: {field}: expected {want}, {_got(value)}")


def _arguments(value: Any, where: str, field: str) -> Any:
    if isinstance(value, str):
        try:
            loads_json(value)
        except InputLimit as e:
            raise EvalsuiteError(f"{where}: {field}: {e}") from None
        except json.JSONDecodeError as e:
            raise EvalsuiteError(f"{where}: {field}: not valid JSON ({e.msg}, column {e.colno})") from None
        return value
    if isinstance(value, dict):
        return value
    raise EvalsuiteError(f"{where}: {field}: expected a JSON object or a JSON string, {_got(value)}")


def tool_call(value: Any, where: str, field: str) -> dict[str, Any]:
    """``{"type": "function", "function": {"name", "arguments"}, "id"?}`` (OpenAI, transformers) or the flat
    ``{"name", "arguments"}`` some datasets use; both are kept as written."""
    if not isinstance(value, dict):
        raise EvalsuiteError(f"{where}: {field}: expected a tool call object, {_got(value)}")
    call = dict(value)
    inner, prefix = (call.get("function"), f"{field}.function") if "function" in call else (call, field)
    if not isinstance(inner, dict):
        raise EvalsuiteError(f"{where}: {prefix}: expected an object with name and arguments, {_got(inner)}")
    expect_str(inner.get("name", MISSING), where, f"{prefix}.name")
    if "arguments" in inner:
        inner = {**inner, "arguments": _arguments(inner["arguments"], where, f"{prefix}.arguments")}
    if "id" in call:
        expect_str(call["id"], where, f"{field}.id")
    return {**call, "function": inner} if "function" in call else inner


def tool_calls(value: Any, where: str, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise EvalsuiteError(f"{where}: {field}: expected a non-empty list of tool calls, {_got(value)}")
    return [tool_call(c, where, f"{field}[{j}]") for j, c in enumerate(value)]


def message(turn: Mapping[str, Any], role: str, content: Any, where: str, field: str, keys: tuple[str, str]
            ) -> Message:
    """The message a template sees, from a dataset turn whose role and content were read under ``keys`` (the
    dataset's role and content keys); the turn's other keys are kept."""
    role_key, content_key = keys
    out: Message = {"role": role}
    out.update((k, v) for k, v in turn.items() if k not in (role_key, content_key, "function_call", "role")
               and v is not None)
    calls = turn.get("tool_calls")
    if calls is None and isinstance(turn.get("function_call"), dict):  # OpenAI's legacy single function call
        calls = [{"type": "function", "function": turn["function_call"]}]
    out["content"] = content_value(content, where, f"{field}.{content_key}", nullable=calls is not None)
    if calls is not None:
        out["tool_calls"] = tool_calls(calls, where, f"{field}.tool_calls")
    for key in TEXT_FIELDS:
        if turn.get(key) is not None:
            out[key] = expect_str(turn[key], where, f"{field}.{key}")
    if "weight" in turn:
        if turn["weight"] not in (0, 1) or isinstance(turn["weight"], bool):
            raise EvalsuiteError(f"{where}: {field}.weight: expected 0 or 1, {_got(turn['weight'])}")
        if role != "assistant":
            raise EvalsuiteError(f"{where}: {field}.weight: only assistant messages carry a weight (role {role!r})")
        out["weight"] = turn["weight"]
    return out


def _tool(value: Any, where: str, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EvalsuiteError(f"{where}: {field}: expected a tool (JSON schema object), {_got(value)}")
    if "function" not in value and "type" not in value and isinstance(value.get("name"), str):
        # A bare function schema (LLaMA-Factory, OpenAI's legacy `functions`): wrap it as transformers' tools are.
        return {"type": "function", "function": dict(value)}
    inner = value.get("function", value)
    if not isinstance(inner, dict) or not isinstance(inner.get("name"), str):
        raise EvalsuiteError(f"{where}: {field}: expected {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, "
                             f"{_got(value)}")
    return dict(value)


def tools(value: Any, where: str, field: str) -> Tools | None:
    """A row's tool list: JSON schemas, or a JSON string holding them (LLaMA-Factory); None when absent or empty."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        try:
            value = loads_json(value)
        except InputLimit as e:
            raise EvalsuiteError(f"{where}: {field}: {e}") from None
        except json.JSONDecodeError as e:
            raise EvalsuiteError(f"{where}: {field}: not valid JSON ({e.msg}, column {e.colno})") from None
    if not isinstance(value, list):
        raise EvalsuiteError(f"{where}: {field}: expected a list of tools, {_got(value)}")
    return tuple(_tool(t, where, f"{field}[{j}]") for j, t in enumerate(value)) or None


def sharegpt_calls(value: Any, where: str, field: str) -> list[dict[str, Any]]:
    """A ShareGPT ``function_call`` turn's value: a JSON object ``{"name", "arguments"}`` or a list of them, as
    transformers-style tool calls."""
    text = expect_str(value, where, field)
    try:
        parsed = loads_json(text)
    except InputLimit as e:
        raise EvalsuiteError(f"{where}: {field}: {e}") from None
    except json.JSONDecodeError as e:
        raise EvalsuiteError(f"{where}: {field}: a function_call value must be JSON ({e.msg}, column {e.colno})"
                             ) from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    out = []
    for j, c in enumerate(calls):
        call = tool_call(c, where, field if len(calls) == 1 else f"{field}[{j}]")
        out.append({"type": "function", "function": call} if "function" not in call else call)
    return out


def call_names(msg: Message) -> list[str]:
    names = []
    for c in msg.get("tool_calls") or ():
        inner = c.get("function", c)
        names.append(str(inner.get("name")))
    return names
