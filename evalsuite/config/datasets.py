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
    specs = []
    for i, entry in enumerate(raw):
        line = lines.get(("datasets", i))
        key = f"datasets[{i}]"
        if isinstance(entry, str):
            entry = {"path": entry, "type": "chat_template"}
        if not isinstance(entry, dict):
            raise EvalsuiteError(located(path, line, key, f"expected a mapping with path and type, got {entry!r}"))
        for k in entry:
            if k not in SPEC_KEYS:
                raise EvalsuiteError(located(path, lines.get(("datasets", i, k)), f"{key}.{k}",
                                             "unknown dataset key; known: " + ", ".join(sorted(SPEC_KEYS))))
        if not isinstance(entry.get("path"), str) or not entry["path"]:
            raise EvalsuiteError(located(path, line, f"{key}.path", "required: a local file/dir or a hub id"))
        typ = entry.get("type", "chat_template")
        custom = None
        if isinstance(typ, dict):
            custom, typ = _custom(typ, path, lines, i), "custom"
        elif typ not in DATASET_TYPES:
            tline = lines.get(("datasets", i, "type"), line)
            raise EvalsuiteError(located(path, tline, f"{key}.type",
                                         f"expected one of {', '.join(DATASET_TYPES)} or a custom format mapping, "
                                         f"got {typ!r}"))
        for bool_key in ("drop_system_message",):
            if bool_key in entry and not isinstance(entry[bool_key], bool):
                raise EvalsuiteError(located(path, lines.get(("datasets", i, bool_key)), f"{key}.{bool_key}",
                                             f"expected true or false, got {entry[bool_key]!r}"))
        roles = _roles(entry.get("roles"), located(path, lines.get(("datasets", i, "roles")), None, key))
        str_fields = {k: entry[k] for k in ("split", "name", "ds_type", "field", "field_messages",
                                            "message_field_role", "message_field_content", "system_prompt")
                      if entry.get(k) is not None}
        for k, v in str_fields.items():
            if not isinstance(v, str):
                raise EvalsuiteError(located(path, lines.get(("datasets", i, k)), f"{key}.{k}",
                                             f"expected a string, got {v!r}"))
        specs.append(DatasetSpec(path=entry["path"], type=str(typ), line=line, custom=custom, roles=roles,
                                 drop_system_message=bool(entry.get("drop_system_message", False)),
                                 data_files=entry.get("data_files"), **str_fields))
    return specs
