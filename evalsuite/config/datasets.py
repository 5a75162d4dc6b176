"""The ``datasets:`` entries of the config (axolotl's shapes), validated with file:line errors."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

from evalsuite.config.yaml_lines import KeyPath
from evalsuite.errors import EvalsuiteError, located

# axolotl's `type:` values we implement. `messages` is our alias of chat_template.
DATASET_TYPES = ("chat_template", "messages", "sharegpt", "alpaca", "completion")
CUSTOM_FORMAT_KEYS = ("system_prompt", "system_format", "field_system", "field_instruction", "field_input",
                      "field_output", "format", "no_input_format")
SPEC_KEYS = {
    "path", "type", "name", "split", "data_files", "ds_type", "field", "field_messages", "message_field_role",
    "message_field_content", "roles", "drop_system_message", "system_prompt", "conversation", "train_on_split",
    "message_property_mappings", "roles_to_train", "train_on_eos",
}

# axolotl's default role names, and LLaMA-Factory's ShareGPT tool results (`observation`; its `function_call` turns
# become assistant tool calls in config/rows.py); other roles pass through unchanged (the lint reports ones the
# template ignores).
DEFAULT_ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                    "system": "system", "tool": "tool", "observation": "tool"}


@dataclass(frozen=True)
class CustomFormat:
    """axolotl's user-defined prompt format (the Phi-3 SQuAD config): prompt from format strings, output trained."""

    format: str
    no_input_format: str | None = None
    system_prompt: str | None = None
    system_format: str = "{system}"
    field_system: str = "system"
    field_instruction: str = "instruction"
    field_input: str = "input"
    field_output: str = "output"


@dataclass(frozen=True)
class DatasetSpec:
    path: str
    type: str  # one of DATASET_TYPES, or "custom" when `type:` is a mapping
    line: int | None = None
    split: str = "train"
    name: str | None = None
    data_files: Any = None
    ds_type: str | None = None
    field: str = "text"
    field_messages: str | None = None
    message_field_role: str | None = None
    message_field_content: str | None = None
    roles: dict[str, str] = dc_field(default_factory=dict)  # data role name -> canonical role
    drop_system_message: bool = False
    system_prompt: str | None = None
    custom: CustomFormat | None = None


def _roles(raw: Any, where: str) -> dict[str, str]:
    """axolotl writes ``roles: {user: [human, user], assistant: [gpt]}``; invert it to data-name -> role."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise EvalsuiteError(f"{where}: roles: expected a mapping like {{user: [human], assistant: [gpt]}}")
    out: dict[str, str] = {}
    for role, names in raw.items():
        for name in [names] if isinstance(names, str) else (names or []):
            if not isinstance(name, str):
                raise EvalsuiteError(f"{where}: roles: {role}: expected strings, got {name!r}")
            out[name] = str(role)
    return out


def _custom(raw: dict[str, Any], path: Path, lines: dict[KeyPath, int], i: int) -> CustomFormat:
    for key in raw:
        if key not in CUSTOM_FORMAT_KEYS:
            line = lines.get(("datasets", i, "type", key))
            raise EvalsuiteError(located(path, line, f"datasets[{i}].type.{key}",
                                         "unknown custom-format key; known: " + ", ".join(CUSTOM_FORMAT_KEYS)))
        if raw[key] is not None and not isinstance(raw[key], str):
            line = lines.get(("datasets", i, "type", key))
            raise EvalsuiteError(located(path, line, f"datasets[{i}].type.{key}",
                                         f"expected a string, got {raw[key]!r}"))
    if not raw.get("format"):
        line = lines.get(("datasets", i, "type"))
        raise EvalsuiteError(located(path, line, f"datasets[{i}].type.format",
                                     "required for a custom format, e.g. \"<|user|>\\n{instruction} {input}<|end|>\""))
    kwargs = {k: v for k, v in raw.items() if v is not None}
    return CustomFormat(**kwargs)


def parse_datasets(raw: Any, path: Path, lines: dict[KeyPath, int]) -> list[DatasetSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise EvalsuiteError(located(path, lines.get(("datasets",)), "datasets",
                                     "expected a list of {path, type, ...} entries"))
    return [_parse_entry(entry, _Entry(path, lines, i)) for i, entry in enumerate(raw)]


@dataclass(frozen=True)
class _Entry:
    """Where ``datasets[i]`` is, to name it and its keys in errors."""

    path: Path
    lines: dict[KeyPath, int]
    i: int

    @property
    def name(self) -> str:
        return f"datasets[{self.i}]"

    def line(self, *key: str) -> int | None:
        return self.lines.get(("datasets", self.i, *key))

    def error(self, key: str, msg: str, line: int | None) -> EvalsuiteError:
        return EvalsuiteError(located(self.path, line, f"{self.name}.{key}", msg))


STRING_KEYS = ("split", "name", "ds_type", "field", "field_messages", "message_field_role", "message_field_content",
               "system_prompt")


def _parse_entry(entry: Any, at: _Entry) -> DatasetSpec:
    if isinstance(entry, str):
        entry = {"path": entry, "type": "chat_template"}
    if not isinstance(entry, dict):
        raise EvalsuiteError(located(at.path, at.line(), at.name,
                                     f"expected a mapping with path and type, got {entry!r}"))
    for k in entry:
        if k not in SPEC_KEYS:
            raise at.error(k, "unknown dataset key; known: " + ", ".join(sorted(SPEC_KEYS)), at.line(k))
    if not isinstance(entry.get("path"), str) or not entry["path"]:
        raise at.error("path", "required: a local file/dir or a hub id", at.line())
    typ, custom = _entry_type(entry.get("type", "chat_template"), at)
    if "drop_system_message" in entry and not isinstance(entry["drop_system_message"], bool):
        raise at.error("drop_system_message", f"expected true or false, got {entry['drop_system_message']!r}",
                       at.line("drop_system_message"))
    roles = _roles(entry.get("roles"), located(at.path, at.line("roles"), None, at.name))
    return DatasetSpec(path=entry["path"], type=typ, line=at.line(), custom=custom, roles=roles,
                       drop_system_message=bool(entry.get("drop_system_message", False)),
                       data_files=entry.get("data_files"), **_string_values(entry, at))


def _entry_type(typ: Any, at: _Entry) -> tuple[str, CustomFormat | None]:
    """One of DATASET_TYPES, or "custom" with its format when ``type:`` is a mapping."""
    if isinstance(typ, dict):
        return "custom", _custom(typ, at.path, at.lines, at.i)
    if typ not in DATASET_TYPES:
        raise at.error("type", f"expected one of {', '.join(DATASET_TYPES)} or a custom format mapping, got {typ!r}",
                       at.line("type") or at.line())
    return str(typ), None


def _string_values(entry: dict[str, Any], at: _Entry) -> dict[str, str]:
    values = {k: entry[k] for k in STRING_KEYS if entry.get(k) is not None}
    for k, v in values.items():
        if not isinstance(v, str):
            raise at.error(k, f"expected a string, got {v!r}", at.line(k))
    return values
