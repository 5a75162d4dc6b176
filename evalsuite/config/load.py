"""The one config file: axolotl-compatible YAML, parsed into a typed, validated :class:`Config`.

The same file drives lint, train and probe. We support a documented subset of axolotl's keys (``SUPPORTED`` below);
keys axolotl knows that we do not act on are accepted with a warning, and so are unknown keys (axolotl has
hundreds, and a config must keep working in axolotl). Every error names ``file:line: key``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.config.datasets import DatasetSpec, parse_datasets
from evalsuite.config.fields import FIELDS, IGNORED_AXOLOTL_KEYS, Field, check_value
from evalsuite.config.yaml_lines import KeyPath, load_yaml
from evalsuite.errors import EvalsuiteError, located

ALIASES = {"sequence_length": "sequence_len", "max_seq_length": "sequence_len"}


class ConfigWarning(UserWarning):
    """A key we accept but do not act on."""


@dataclass
class Config:
    """Validated config. Attribute names are axolotl's keys; see ``evalsuite.config.fields.FIELDS`` for defaults and
    docs."""

    path: Path
    base_model: str
    datasets: list[DatasetSpec]
    values: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)
    ignored: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found normally: the typed fields live in ``values``.
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    def line_of(self, *key: str | int) -> int | None:
        return self.lines.get(tuple(key))

    def where(self, *key: str | int) -> str:
        """``file:line`` of a key, for messages raised after parsing (e.g. a dataset file that is missing)."""
        line = self.line_of(*key)
        return f"{self.path}:{line}" if line else str(self.path)

    @property
    def adapter_kind(self) -> str:
        if self.values["adapter"] == "qlora" or self.values["load_in_4bit"]:
            return "qlora"
        return "lora"


def _field_for(key: str) -> Field | None:
    return FIELDS.get(ALIASES.get(key, key))


def _locator(path: Path, line: int | None, key: str) -> Callable[[str], str]:
    return lambda msg: located(path, line, key, msg)


def parse_config(data: Any, path: Path, lines: dict[KeyPath, int]) -> Config:
    if not isinstance(data, dict):
        raise EvalsuiteError(f"{path}: expected a mapping of keys (axolotl-style YAML), got {type(data).__name__}")
    values: dict[str, Any] = {name: f.default for name, f in FIELDS.items()}
    ignored: list[str] = []
    for key, raw in data.items():
        line = lines.get((key,))
        if key == "datasets":
            continue
        spec = _field_for(key)
        if spec is None:
            ignored.append(key)
            if key not in IGNORED_AXOLOTL_KEYS:
                # Possibly a typo of a key we do support: say so per key, with its line.
                warnings.warn(located(path, line, key, "unknown key, ignored"), ConfigWarning, stacklevel=2)
            continue
        canonical: str = ALIASES.get(str(key), str(key))
        if canonical != key and canonical in data:
            raise EvalsuiteError(located(path, line, key, f"given together with {canonical}; keep one"))
        values[canonical] = check_value(spec, raw, _locator(path, line, key))
    set_axolotl_only = [k for k in ignored if k in IGNORED_AXOLOTL_KEYS and data[k] not in (None, False, "", [])]
    if set_axolotl_only:
        warnings.warn(f"{path}: axolotl keys accepted but not used by evalsuite: {', '.join(set_axolotl_only)}",
                      ConfigWarning, stacklevel=2)
    base_model = values.get("base_model")
    if not base_model:
        raise EvalsuiteError(located(path, None, "base_model", "required (a hub id or a local model directory)"))
    datasets = parse_datasets(data.get("datasets"), path, lines)
    _check_combinations(values, path, lines)
    return Config(path=path, base_model=str(base_model), datasets=datasets, values=values, lines=lines,
                  ignored=ignored)


def _check_combinations(values: dict[str, Any], path: Path, lines: dict[KeyPath, int]) -> None:
    def fail(key: str, msg: str) -> None:
        raise EvalsuiteError(located(path, lines.get((key,)), key, msg))

    if values["load_in_4bit"] and values["load_in_8bit"]:
        fail("load_in_8bit", "cannot be true together with load_in_4bit")
    if values["adapter"] == "qlora" and not (values["load_in_4bit"] or values["load_in_8bit"]):
        # axolotl implies 4-bit for qlora; make that explicit rather than silently full precision.
        values["load_in_4bit"] = True
    if values["bf16"] is True and values["fp16"]:
        fail("fp16", "cannot be true together with bf16")
    if values["chat_template"] == "jinja" and not values["chat_template_jinja"]:
        fail("chat_template", "is 'jinja' but chat_template_jinja (a file or the template text) is not set")
    if values["lora_target_linear"] and values["lora_target_modules"]:
        fail("lora_target_modules", "given together with lora_target_linear: true; keep one")


def load_config(path: str | Path) -> Config:
    """Load and validate a config file. Raises :class:`EvalsuiteError` with ``file:line: key: ...`` on bad input."""
    p = Path(path)
    data, lines = load_yaml(p)
    return parse_config(data, p, lines)


def resolve_path(config: Config, value: str) -> Path:
    """Paths are relative to the working directory (as in axolotl), falling back to the config's folder."""
    p = Path(value).expanduser()
    if p.is_absolute() or p.exists():
        return p
    beside = config.path.parent / p
    return beside if beside.exists() else p
