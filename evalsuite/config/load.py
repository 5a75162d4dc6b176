"""The one config file: axolotl-compatible YAML, parsed into a typed, validated :class:`Config`.

The same file drives lint, train and probe. We support a documented subset of axolotl's keys (``fields.FIELDS``);
keys axolotl knows that we do not act on are accepted with a warning, and so are unknown keys (axolotl has
hundreds, and a config must keep working in axolotl). Every error names ``file:line: key``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from evalsuite.config.datasets import DatasetSpec, parse_datasets
from evalsuite.config.fields import (
    FIELDS,
    IGNORED_AXOLOTL_KEYS,
    AdapterName,
    Collator,
    ComputeDtype,
    Field,
    Optimizer,
    QuantType,
    Scheduler,
    check_value,
)
from evalsuite.config.yaml_lines import KeyPath, load_yaml
from evalsuite.errors import EvalsuiteError, located

ALIASES = {"sequence_length": "sequence_len", "max_seq_length": "sequence_len"}


class ConfigWarning(UserWarning):
    """A key we accept but do not act on."""


@dataclass(frozen=True, kw_only=True)
class Config:
    """Validated config, never changed after parsing (``dataclasses.replace`` makes an edited copy, e.g. for
    ``--max-steps``). One attribute per supported key, in ``FIELDS`` order, with ``FIELDS``' defaults (a test keeps
    the two in step); ``base_model`` is the one required key."""

    path: Path
    datasets: list[DatasetSpec] = field(default_factory=list)
    lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)
    ignored: list[str] = field(default_factory=list)

    base_model: str
    revision_of_model: str | None = None
    tokenizer_config: str | None = None
    chat_template: str = "tokenizer_default"
    chat_template_jinja: str | None = None
    sequence_len: int = 2048
    micro_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    num_epochs: float = 1.0
    max_steps: int | None = None
    optimizer: Optimizer = "adamw_torch"
    learning_rate: float = 2e-4
    lr_scheduler: Scheduler = "cosine"
    warmup_ratio: float = 0.0
    warmup_steps: int | None = None
    weight_decay: float = 0.0
    adam_beta1: float | None = None
    adam_beta2: float | None = None
    adam_epsilon: float | None = None
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int | None = None
    save_total_limit: int | None = None
    adapter: AdapterName = "lora"
    lora_r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.0
    lora_target_linear: bool = False
    lora_target_modules: list[str] | None = None
    lora_modules_to_save: list[str] | None = None
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    bnb_4bit_quant_type: QuantType = "nf4"
    bnb_4bit_compute_dtype: ComputeDtype = "bfloat16"
    bnb_4bit_use_double_quant: bool = True
    bf16: bool | Literal["auto"] = "auto"
    fp16: bool = False
    tf32: bool = False
    gradient_checkpointing: bool = False
    gradient_checkpointing_kwargs: object = None
    flash_attention: bool = False
    sample_packing: bool = False
    train_on_inputs: bool = False
    train_on_reasoning: bool = True
    special_tokens: dict[str, str] | None = None
    seed: int = 42
    output_dir: str = "./outputs/out"
    ignore: list[str] | None = None
    lint_collator: Collator = "trl"
    gates: object = None
    backend: str = "trl"
    deepspeed: str | None = None
    fsdp: object = None
    fsdp_config: object = None

    def line_of(self, *key: str | int) -> int | None:
        return self.lines.get(tuple(key))

    def where(self, *key: str | int) -> str:
        """``file:line`` of a key, for messages raised after parsing (e.g. a dataset file that is missing)."""
        line = self.line_of(*key)
        return f"{self.path}:{line}" if line else str(self.path)

    @property
    def adapter_kind(self) -> str:
        if self.adapter == "qlora" or self.load_in_4bit:
            return "qlora"
        return "lora"

    def settings(self, keys: Iterable[str] = FIELDS) -> dict[str, Any]:
        """The values of the given config keys (default: every supported key), for manifests and generated
        configs that copy keys by name."""
        return {key: getattr(self, key) for key in keys}


def _field_for(key: str) -> Field | None:
    return FIELDS.get(ALIASES.get(key, key))


def _locator(path: Path, line: int | None, key: str) -> Callable[[str], str]:
    return lambda msg: located(path, line, key, msg)


def parse_config(data: Any, path: Path, lines: dict[KeyPath, int]) -> Config:
    if not isinstance(data, dict):
        raise EvalsuiteError(f"{path}: expected a mapping of keys (axolotl-style YAML), got {type(data).__name__}")
    values, ignored = _key_values(data, path, lines)
    if not values["base_model"]:
        raise EvalsuiteError(located(path, None, "base_model", "required (a hub id or a local model directory)"))
    datasets = parse_datasets(data.get("datasets"), path, lines)
    _check_combinations(values, path, lines)
    return Config(path=path, datasets=datasets, lines=lines, ignored=ignored, **_implied(values))


def _key_values(data: dict[Any, Any], path: Path, lines: dict[KeyPath, int]) -> tuple[dict[str, Any], list[str]]:
    """Every supported key's checked value (defaults for the absent ones), and the keys given but not acted on."""
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
                warnings.warn(located(path, line, key, "unknown key, ignored"), ConfigWarning, stacklevel=3)
            continue
        canonical: str = ALIASES.get(str(key), str(key))
        if canonical != key and canonical in data:
            raise EvalsuiteError(located(path, line, key, f"given together with {canonical}; keep one"))
        values[canonical] = check_value(spec, raw, _locator(path, line, key), canonical)
    _warn_axolotl_only(data, ignored, path)
    return values, ignored


def _warn_axolotl_only(data: dict[Any, Any], ignored: list[str], path: Path) -> None:
    set_axolotl_only = [k for k in ignored if k in IGNORED_AXOLOTL_KEYS and data[k] not in (None, False, "", [])]
    if set_axolotl_only:
        warnings.warn(f"{path}: axolotl keys accepted but not used by evalsuite: {', '.join(set_axolotl_only)}",
                      ConfigWarning, stacklevel=4)


def _check_combinations(values: dict[str, Any], path: Path, lines: dict[KeyPath, int]) -> None:
    def fail(key: str, msg: str) -> None:
        raise EvalsuiteError(located(path, lines.get((key,)), key, msg))

    if values["load_in_4bit"] and values["load_in_8bit"]:
        fail("load_in_8bit", "cannot be true together with load_in_4bit")
    if values["bf16"] is True and values["fp16"]:
        fail("fp16", "cannot be true together with bf16")
    if values["chat_template"] == "jinja" and not values["chat_template_jinja"]:
        fail("chat_template", "is 'jinja' but chat_template_jinja (a file or the template text) is not set")
    if values["lora_target_linear"] and values["lora_target_modules"]:
        fail("lora_target_modules", "given together with lora_target_linear: true; keep one")


def _implied(values: dict[str, Any]) -> dict[str, Any]:
    """Values one key implies for another, made explicit before the Config is built."""
    if values["adapter"] == "qlora" and not (values["load_in_4bit"] or values["load_in_8bit"]):
        # axolotl implies 4-bit for qlora; make that explicit rather than silently full precision.
        return values | {"load_in_4bit": True}
    return values


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
