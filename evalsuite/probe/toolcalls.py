"""Tool calls in a model's output: found, parsed as JSON, and checked against the tools the prompt declared.

Models wrap their calls in their template's markers (``<tool_call>...</tool_call>`` for Hermes/Qwen,
``[TOOL_CALLS][...]`` for Mistral, ``<|python_tag|>`` for Llama 3.1, ``<|tool_call|>[...]`` for Granite and Phi-4-mini,
``<|START_ACTION|>`` for Command-R7B, a ```json fence for many fine-tunes). The markers are only delimiters here:
every top-level JSON object or array in the output is a candidate, and a call is an object with a ``name`` (or
OpenAI's ``{"function": {"name", "arguments"}}``) and its ``arguments`` (or ``parameters``) as an object, or as a
string holding one (OpenAI's wire format).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evalsuite.config.limits import InputLimit, loads_json, number_error

_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class ToolCall:
    name: Any
    arguments: Any


def tool_names(tools: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Declared tool name -> its required parameters, from OpenAI-style (``{"type": "function", "function":
    {...}}``) or bare (``{"name", "parameters"}``) declarations."""
    out: dict[str, list[str]] = {}
    for tool in tools:
        spec = tool.get("function", tool)
        if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
            params = spec.get("parameters") or {}
            required = params.get("required", []) if isinstance(params, Mapping) else []
            out[spec["name"]] = [r for r in required if isinstance(r, str)]
    return out


def json_values(text: str) -> tuple[list[Any], str | None]:
    """Every top-level JSON object or array in ``text``, and the first parse error of a ``{``/``[`` that started
    none (None when every opening bracket was part of a value, or there was none)."""
    values: list[Any] = []
    error: str | None = None
    i = 0
    while i < len(text):
        if text[i] not in "{[":
            i += 1
            continue
        try:
            value, end = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError as e:
            error = error or f"{e.msg} at character {e.pos}"
            i += 1
            continue
        except RecursionError:  # model output nested thousands deep: no call is in there
            error = error or f"JSON nested too deeply at character {i}"
            break
        except ValueError as e:  # an integer of more than 4,300 digits
            error = error or f"{number_error(e)} at character {i}"
            i += 1
            continue
        if isinstance(value, (dict, list)):
            values.append(value)
        i = end
    return values, (error if not values else None)


def calls_in(values: Sequence[Any]) -> list[ToolCall]:
    """The call-shaped objects among parsed JSON values (a list holds several calls)."""
    out = []
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, dict):
                continue
            inner = item.get("function")
            spec: dict[str, Any] = inner if isinstance(inner, dict) else item
            if "name" in spec:
                out.append(ToolCall(spec.get("name"), spec.get("arguments", spec.get("parameters"))))
    return out


def call_problems(text: str, tools: Sequence[Mapping[str, Any]], expected: str | None = None) -> list[tuple[str, str]]:
    """(reason id, message) for everything wrong with the tool calls in ``text``; empty when at least one call
    parses, every call names a declared tool with its required arguments as an object, and ``expected`` (a tool
    name) is among them."""
    declared = tool_names(tools)
    values, error = json_values(text)
    if error is not None:
        return [("bad-json", f"a tool call that is not valid JSON: {error}")]
    calls = calls_in(values)
    if not calls:
        return [("no-call", "no tool call (a JSON object with a name) in the output")]
    found = [p for c in calls for p in _check(c, declared)]
    if expected is not None and expected not in {c.name for c in calls}:
        names = ", ".join(repr(c.name) for c in calls)
        found.append(("wrong-tool", f"called {names}, expected {expected!r}"))
    return found


def _check(call: ToolCall, declared: dict[str, list[str]]) -> list[tuple[str, str]]:
    if not isinstance(call.name, str) or call.name not in declared:
        return [("unknown-tool", f"{call.name!r} is not a declared tool (declared: {', '.join(declared) or 'none'})")]
    args = call.arguments
    if isinstance(args, str):
        try:
            args = loads_json(args)
        except json.JSONDecodeError as e:
            return [("bad-arguments", f"{call.name}: arguments are a string that is not JSON ({e.msg})")]
        except InputLimit as e:
            return [("bad-arguments", f"{call.name}: arguments: {e}")]
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return [("bad-arguments", f"{call.name}: arguments must be an object, got {type(args).__name__}")]
    missing = [r for r in declared[call.name] if r not in args]
    return [("missing-arguments", f"{call.name}: missing required argument(s) {', '.join(missing)}")] if missing else []
