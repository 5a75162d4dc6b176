"""The supported config keys: type, default and one line of documentation each (the README table is built from it)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from evalsuite.config.limits import range_problem
from evalsuite.errors import EvalsuiteError

# The enum keys' choices, as types (``Config`` declares its attributes with them) and as the tuples checked here.
Optimizer = Literal[
    "adamw_torch", "adamw_torch_fused", "adamw_hf", "adafactor", "sgd", "adamw_bnb_8bit", "adamw_8bit",
    "paged_adamw_8bit", "paged_adamw_32bit", "lion_8bit", "paged_lion_8bit", "paged_adamw", "adamw_torch_4bit",
]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial",
                    "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay", "reduce_lr_on_plateau"]
AdapterName = Literal["lora", "qlora"]
QuantType = Literal["nf4", "fp4"]
ComputeDtype = Literal["bfloat16", "float16", "float32"]
Collator = Literal["trl", "mask-pad-id"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)


@dataclass(frozen=True)
class Field:
    kind: str
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    nullable: bool = True  # axolotl configs write `fp16:` (null) to mean "default"


def F(kind: str, default: Any, doc: str, choices: tuple[str, ...] = ()) -> Field:
    return Field(kind, default, doc, choices)


FIELDS: dict[str, Field] = {
    "base_model": F("str", None, "hub id or local directory of the base model"),
    "revision_of_model": F("str", None, "hub revision (commit/tag) of the base model"),
    "tokenizer_config": F("str", None, "tokenizer directory or hub id, when not the base model's"),
    "chat_template": F("str", "tokenizer_default",
                       "tokenizer_default (the tokenizer's own), chatml (built in), jinja (with chat_template_jinja), "
                       "or an axolotl template name resolved to the tokenizer's own template"),
    "chat_template_jinja": F("str", None, "path to a .jinja file, or the template text itself"),
    "sequence_len": F("posint", 2048, "maximum tokens per sample (alias: sequence_length); longer rows are truncated"),
    "micro_batch_size": F("posint", 1, "samples per device per step"),
    "gradient_accumulation_steps": F("posint", 1, "micro-batches per optimizer step"),
    "num_epochs": F("posfloat", 1.0, "passes over the data (ignored when max_steps is set)"),
    "max_steps": F("posint", None, "stop after this many optimizer steps"),
    "optimizer": F("enum", "adamw_torch", "optimizer name as in transformers' `optim`", OPTIMIZERS),
    "learning_rate": F("posfloat", 2e-4, "peak learning rate"),
    "lr_scheduler": F("enum", "cosine", "learning-rate schedule", SCHEDULERS),
    "warmup_ratio": F("fraction", 0.0, "fraction of steps spent warming up"),
    "warmup_steps": F("nonnegint", None, "warm-up steps (overrides warmup_ratio)"),
    "weight_decay": F("nonnegfloat", 0.0, "AdamW weight decay"),
    "adam_beta1": F("fraction", None, "AdamW beta1"),
    "adam_beta2": F("fraction", None, "AdamW beta2"),
    "adam_epsilon": F("posfloat", None, "AdamW epsilon"),
    "max_grad_norm": F("nonnegfloat", 1.0, "gradient clipping norm"),
    "logging_steps": F("posint", 10, "log the loss every N steps"),
    "save_steps": F("posint", None, "write a checkpoint every N steps (resume with `evalsuite train --resume`)"),
    "save_total_limit": F("posint", None, "keep at most N checkpoints"),
    "adapter": F("enum", "lora", "lora or qlora", get_args(AdapterName)),
    "lora_r": F("posint", 8, "LoRA rank"),
    "lora_alpha": F("posfloat", 16, "LoRA alpha (scale = alpha / r)"),
    "lora_dropout": F("fraction", 0.0, "dropout on the LoRA path"),
    "lora_target_linear": F("bool", False, "target every linear layer except the output head"),
    "lora_target_modules": F("str_list", None, "module names to adapt (default: attention q/k/v/o projections)"),
    "lora_modules_to_save": F("str_list", None, "modules trained in full and saved with the adapter "
                                                "(e.g. embed_tokens, lm_head when adding tokens)"),
    "load_in_8bit": F("bool", False, "load the base in 8-bit (bitsandbytes)"),
    "load_in_4bit": F("bool", False, "load the base in 4-bit (bitsandbytes; QLoRA)"),
    "bnb_4bit_quant_type": F("enum", "nf4", "4-bit quantisation type", get_args(QuantType)),
    "bnb_4bit_compute_dtype": F("enum", "bfloat16", "compute dtype of 4-bit layers",
                                get_args(ComputeDtype)),
    "bnb_4bit_use_double_quant": F("bool", True, "quantise the quantisation constants too"),
    "bf16": F("bool_auto", "auto", "train in bfloat16 (auto: when the device supports it)"),
    "fp16": F("bool", False, "train in float16 mixed precision"),
    "tf32": F("bool", False, "allow TF32 matmuls on Ampere+ GPUs"),
    "gradient_checkpointing": F("bool", False, "trade compute for activation memory"),
    "gradient_checkpointing_kwargs": F("any", None, "passed to transformers (e.g. use_reentrant)"),
    "flash_attention": F("bool", False, "use flash_attention_2 (needs the flash-attn package and a GPU)"),
    "sample_packing": F("bool", False, "pack several samples per sequence; positions restart per sample and "
                                       "attention stays inside each sample"),
    "train_on_inputs": F("bool", False, "also train on prompt/user/system tokens (false: assistant tokens only)"),
    "train_on_reasoning": F("bool", True, "train on the reasoning block that opens an answer (<think>...</think>; "
                                          "false: it is context, only the answer after it is trained; evalsuite key)"),
    "special_tokens": F("str_map", None, "tokens to set on the tokenizer (pad_token, eos_token, ...)"),
    "seed": F("nonnegint", 42, "random seed"),
    "output_dir": F("str", "./outputs/out", "the run dir written by `evalsuite train`"),
    "ignore": F("str_list", None, "lint rule ids downgraded on purpose (evalsuite key)"),
    "lint_collator": F("enum", "trl", "label collator the lint models: trl (labels padded with -100; evalsuite's "
                                      "backend) or mask-pad-id (labels -100 wherever input_ids == pad_token_id, as "
                                      "transformers' DataCollatorForLanguageModeling; evalsuite key)",
                       get_args(Collator)),
    "gates": F("any", None, "quality gates (evalsuite key; see `evalsuite gate --help`)"),
    "backend": F("str", "trl", "trainer backend (evalsuite key; see `evalsuite backends`)"),
    "deepspeed": F("str", None, "DeepSpeed config passed through to accelerate"),
    "fsdp": F("any", None, "FSDP settings passed through to accelerate"),
    "fsdp_config": F("any", None, "FSDP config passed through to accelerate"),
}

# Keys axolotl knows that we accept without acting on them (so seed configs load without noise being an error).
IGNORED_AXOLOTL_KEYS = frozenset({
    "model_type", "tokenizer_type", "strict", "val_set_size", "dataset_prepared_path", "wandb_project",
    "wandb_entity", "wandb_watch", "wandb_name", "wandb_log_model", "wandb_run_id", "eval_sample_packing",
    "pad_to_sequence_len", "group_by_length", "early_stopping_patience", "resume_from_checkpoint", "local_rank",
    "xformers_attention", "evals_per_epoch", "eval_table_size", "eval_max_new_tokens", "saves_per_epoch", "debug",
    "hub_model_id", "is_llama_derived_model", "is_mistral_derived_model", "is_qwen_derived_model", "trust_remote_code",
    "eval_steps", "lora_fan_in_fan_out", "lora_model_dir", "s2_attention", "sdp_attention", "flash_attn_cross_entropy",
    "flash_attn_rms_norm", "flash_attn_fuse_qkv", "flash_attn_fuse_mlp", "unfrozen_parameters", "dataset_processes",
    "chat_template_strategy", "auto_resume_from_checkpoints", "torch_compile", "plugins", "liger_rope",
    "eval_batch_size", "special_tokens_to_add", "tokens", "max_packed_sequence_len", "sample_packing_eff_est",
    "total_num_tokens", "gpu_memory_limit", "low_cpu_mem_usage", "shuffle_merged_datasets", "test_datasets",
    "save_safetensors", "save_strategy", "eval_strategy", "evaluation_strategy", "loss_watchdog_threshold",
    "loss_watchdog_patience", "noisy_embedding_alpha", "neftune_noise_alpha", "hf_use_auth_token",
    "push_dataset_to_hub",
})


def _describe(raw: Any) -> str:
    return f'"{raw}"' if isinstance(raw, str) else repr(raw)


def check_value(spec: Field, raw: Any, where: Callable[[str], str], key: str = "") -> Any:
    """Validate one raw YAML value against its field (and, for ``key``, its range in
    :data:`evalsuite.config.limits.RANGES`); ``where(msg)`` formats the located error."""
    if raw is None:
        return spec.default
    kind = KINDS.get(spec.kind)
    if kind is None:
        raise AssertionError(f"unknown field kind {spec.kind}")
    convert, expected = kind
    value = convert(raw, spec)
    if value is None:
        expected = expected or "one of " + ", ".join(spec.choices)
        raise EvalsuiteError(where(f"expected {expected}, got {_describe(raw)}"))
    problem = range_problem(key, value)
    if problem:
        raise EvalsuiteError(where(problem))
    return value


# Each converter returns the checked value, or None when ``raw`` (never None itself) is not of its kind.
Converter = Callable[[Any, Field], Any]


def _to_str(raw: Any, _spec: Field) -> str | None:
    # YAML reads `revision: 1234` or `base_model: 7` as numbers; they are names here.
    return str(raw) if isinstance(raw, (str, int, float)) and not isinstance(raw, bool) else None


def _to_bool(raw: Any, _spec: Field) -> bool | None:
    return raw if isinstance(raw, bool) else None


def _to_bool_auto(raw: Any, _spec: Field) -> bool | str | None:
    return raw if isinstance(raw, bool) or raw == "auto" else None


def _to_int(raw: Any, spec: Field) -> int | None:
    if not isinstance(raw, int) or isinstance(raw, bool):
        return None
    lowest = 0 if spec.kind == "nonnegint" else 1
    return raw if raw >= lowest else None


FLOAT_RANGES: dict[str, Callable[[float], bool]] = {
    "posfloat": lambda v: v > 0,
    "nonnegfloat": lambda v: v >= 0,
    "fraction": lambda v: 0 <= v < 1,
}


def _to_float(raw: Any, spec: Field) -> float | None:
    value = _as_float(raw)
    return value if value is not None and FLOAT_RANGES[spec.kind](value) else None


def _to_choice(raw: Any, spec: Field) -> str | None:
    return raw if isinstance(raw, str) and raw in spec.choices else None


def _to_str_list(raw: Any, _spec: Field) -> list[str] | None:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return list(raw)
    return None


def _to_str_map(raw: Any, _spec: Field) -> dict[str, str] | None:
    if isinstance(raw, dict) and all(isinstance(v, str) for v in raw.values()):
        return {str(k): v for k, v in raw.items()}
    return None


# kind -> (converter, what the error says was expected; "" for enum: its choices are listed instead)
KINDS: dict[str, tuple[Converter, str]] = {
    "any": (lambda raw, _spec: raw, ""),
    "str": (_to_str, "a string"),
    "bool": (_to_bool, "true or false"),
    "bool_auto": (_to_bool_auto, "true, false or auto"),
    "posint": (_to_int, "a positive integer"),
    "nonnegint": (_to_int, "a non-negative integer"),
    "posfloat": (_to_float, "a positive number"),
    "nonnegfloat": (_to_float, "a non-negative number"),
    "fraction": (_to_float, "a number in [0, 1)"),
    "enum": (_to_choice, ""),
    "str_list": (_to_str_list, "a list of strings"),
    "str_map": (_to_str_map, "a mapping of names to strings"),
}


def _as_float(raw: Any) -> float | None:
    """A finite number, or None: ``.inf`` and ``.nan`` are YAML floats, but never a learning rate."""
    if isinstance(raw, bool):
        return None
    if not isinstance(raw, (int, float, str)):
        return None
    try:
        value = float(raw)  # YAML 1.1 reads `2e-4` as a string; axolotl accepts it as a number, so do we
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None
