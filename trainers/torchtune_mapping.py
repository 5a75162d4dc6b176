"""Our axolotl-style config -> a torchtune LoRA recipe config. Pure data, no torch: the contract tests run anywhere.

Read top to bottom: which model builder (a named one such as ``lora_llama3_8b`` for the published hub ids, or the
family's component builder with the dimensions from the model's ``config.json``), which layers get LoRA, then the
recipe keys (batch, accumulation, epochs/steps, optimizer, schedule, dtype, checkpointer, logging). The dataset and
tokenizer keys name evalsuite's pre-tokenized dataset (see ``torchtune_components``), so torchtune trains on the
same tokens and label masks as the other backends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.config.load import Config
from evalsuite.errors import EvalsuiteError

COMPONENTS = "evalsuite.trainers.torchtune_components"


@dataclass(frozen=True)
class ModelSpec:
    builder: str  # the model's _component_
    model_type: str  # the HF checkpointer's model_type
    family: str
    dims: dict[str, Any] = field(default_factory=dict)  # builder kwargs (component builders only)
    has_output_lora: bool = True  # gemma2's builders take no apply_lora_to_output


# Published hub ids -> (torchtune module, builder suffix, model_type, family). Facts from torchtune's model builders.
NAMED: dict[str, tuple[str, str, str, str]] = {
    "meta-llama/meta-llama-3-8b": ("llama3", "llama3_8b", "LLAMA3", "llama"),
    "meta-llama/meta-llama-3-8b-instruct": ("llama3", "llama3_8b", "LLAMA3", "llama"),
    "meta-llama/meta-llama-3-70b-instruct": ("llama3", "llama3_70b", "LLAMA3", "llama"),
    "meta-llama/llama-3.1-8b": ("llama3_1", "llama3_1_8b", "LLAMA3", "llama"),
    "meta-llama/llama-3.1-8b-instruct": ("llama3_1", "llama3_1_8b", "LLAMA3", "llama"),
    "meta-llama/meta-llama-3.1-8b-instruct": ("llama3_1", "llama3_1_8b", "LLAMA3", "llama"),
    "google/gemma-2-2b": ("gemma2", "gemma2_2b", "GEMMA2", "gemma2"),
    "google/gemma-2-2b-it": ("gemma2", "gemma2_2b", "GEMMA2", "gemma2"),
    "google/gemma-2-9b": ("gemma2", "gemma2_9b", "GEMMA2", "gemma2"),
    "google/gemma-2-9b-it": ("gemma2", "gemma2_9b", "GEMMA2", "gemma2"),
    "google/gemma-2-27b": ("gemma2", "gemma2_27b", "GEMMA2", "gemma2"),
    "google/gemma-2-27b-it": ("gemma2", "gemma2_27b", "GEMMA2", "gemma2"),
    "microsoft/phi-3-mini-4k-instruct": ("phi3", "phi3_mini", "PHI3_MINI", "phi3"),
    "microsoft/phi-3-mini-128k-instruct": ("phi3", "phi3_mini", "PHI3_MINI", "phi3"),
}

ATTN = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "o_proj": "output_proj"}
MLP = ("gate_proj", "up_proj", "down_proj")
PEFT_DEFAULT = ["q_proj", "v_proj"]  # peft's default targets for llama/qwen2-style models (what trl gets)

OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "adamw_torch": ("torch.optim.AdamW", {}),
    "adamw_hf": ("torch.optim.AdamW", {}),
    "adamw_torch_fused": ("torch.optim.AdamW", {"fused": True}),
    "adamw_bnb_8bit": ("bitsandbytes.optim.AdamW8bit", {}),
    "adamw_8bit": ("bitsandbytes.optim.AdamW8bit", {}),
    "paged_adamw_8bit": ("bitsandbytes.optim.PagedAdamW8bit", {}),
    "paged_adamw_32bit": ("bitsandbytes.optim.PagedAdamW", {}),
    "paged_adamw": ("bitsandbytes.optim.PagedAdamW", {}),
    "sgd": ("torch.optim.SGD", {}),
}
SCHEDULERS = {
    "cosine": "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
    "linear": f"{COMPONENTS}.linear_schedule_with_warmup",
    "constant": f"{COMPONENTS}.constant_schedule_with_warmup",
    "constant_with_warmup": f"{COMPONENTS}.constant_schedule_with_warmup",
}


def _fail(config: Config, key: str, msg: str) -> EvalsuiteError:
    return EvalsuiteError(f"{config.where(key)}: {key}: {msg}")


def model_spec(config: Config, hf_config: dict[str, Any] | None) -> ModelSpec:
    """A named builder for the published hub ids (the exact builder the published recipes use), otherwise the
    family's component builder sized from the model's config.json."""
    if config.load_in_8bit:
        raise _fail(config, "load_in_8bit", "torchtune has no 8-bit base loading; use adapter: qlora (NF4) or lora")
    if config.adapter_kind == "qlora" and config.bnb_4bit_quant_type != "nf4":
        raise _fail(config, "bnb_4bit_quant_type", "torchtune quantises the base to nf4 only")
    quant = "qlora_" if config.adapter_kind == "qlora" else "lora_"
    named = NAMED.get(config.base_model.lower())
    if named:
        module, suffix, model_type, family = named
        return ModelSpec(f"torchtune.models.{module}.{quant}{suffix}", model_type, family,
                         has_output_lora=family != "gemma2")
    if hf_config is None:
        raise _fail(config, "base_model", f"{config.base_model!r} is not a torchtune model this backend knows and has "
                    "no local config.json; use a local model directory or one of: " + ", ".join(sorted(NAMED)))
    kind = hf_config.get("model_type")
    rope = hf_config.get("rope_parameters") or {}
    rope_base = hf_config.get("rope_theta", rope.get("rope_theta", 10000.0))
    dims = {
        "vocab_size": hf_config["vocab_size"], "num_layers": hf_config["num_hidden_layers"],
        "num_heads": hf_config["num_attention_heads"],
        "num_kv_heads": hf_config.get("num_key_value_heads", hf_config["num_attention_heads"]),
        "embed_dim": hf_config["hidden_size"], "intermediate_dim": hf_config["intermediate_size"],
        "max_seq_len": hf_config.get("max_position_embeddings", config.sequence_len),
        "norm_eps": hf_config.get("rms_norm_eps", 1e-5), "rope_base": rope_base,
    }
    if config.adapter_kind == "qlora":
        dims["quantize_base"] = True
    if kind == "qwen2":
        dims["tie_word_embeddings"] = bool(hf_config.get("tie_word_embeddings", False))
        return ModelSpec("torchtune.models.qwen2._component_builders.lora_qwen2", "QWEN2", "qwen2", dims)
    if kind == "llama":
        return _llama_spec(config, hf_config, dims)
    raise _fail(config, "base_model", f"model_type {kind!r}: the torchtune backend builds qwen2 and llama models from "
                "config.json, and these hub ids by name: " + ", ".join(sorted(NAMED)))


def _llama_spec(config: Config, hf_config: dict[str, Any], dims: dict[str, Any]) -> ModelSpec:
    """Plain Llama: ``lora_llama3``. Tied embeddings or Llama-3.1-style RoPE scaling: ``lora_llama3_2``, whose
    scaled RoPE with ``scale_factor`` 1 is plain RoPE (torchtune fixes low/high frequency factors 1/4 and an
    original context of 8192, so other scaling parameters are refused rather than silently changed)."""
    heads = hf_config["num_attention_heads"]
    biased = [k for k in ("attention_bias", "mlp_bias") if hf_config.get(k)]
    if biased:
        raise _fail(config, "base_model", f"{' and '.join(biased)} set in config.json: torchtune's llama builders "
                    "have no bias in the attention or MLP projections")
    if hf_config.get("head_dim") not in (None, hf_config["hidden_size"] // heads):
        raise _fail(config, "base_model", f"head_dim {hf_config['head_dim']} is not hidden_size / heads; torchtune's "
                    "llama builders derive it")
    rope = {**(hf_config.get("rope_scaling") or {}), **(hf_config.get("rope_parameters") or {})}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    tied = bool(hf_config.get("tie_word_embeddings", False))
    if rope_type == "default" and not tied:
        return ModelSpec("torchtune.models.llama3._component_builders.lora_llama3", "LLAMA3", "llama", dims)
    if rope_type == "llama3":
        fixed = tuple(rope.get(k) for k in ("low_freq_factor", "high_freq_factor", "original_max_position_embeddings"))
        if fixed != (1.0, 4.0, 8192):
            raise _fail(config, "base_model", f"llama3 rope scaling {fixed} (low/high frequency factor, original "
                        "context): torchtune supports (1, 4, 8192) only")
    elif rope_type != "default":
        raise _fail(config, "base_model", f"rope_type {rope_type!r} is not supported by torchtune's llama builders")
    extra = {"scale_factor": rope.get("factor", 1) if rope_type == "llama3" else 1, "tie_word_embeddings": tied}
    return ModelSpec("torchtune.models.llama3_2._component_builders.lora_llama3_2", "LLAMA3_2", "llama",
                     {**dims, **extra})


def lora_settings(config: Config, spec: ModelSpec) -> dict[str, Any]:
    """HF module names -> torchtune's: q/k/v/o projections by name; gate/up/down only all together
    (``apply_lora_to_mlp``), lm_head as ``apply_lora_to_output``. lora_target_linear: every linear but the head,
    as peft's "all-linear" does."""
    if config.lora_modules_to_save:
        raise _fail(config, "lora_modules_to_save", "not supported by torchtune's LoRA recipes (use the trl backend)")
    targets = [*ATTN, *MLP] if config.lora_target_linear else list(config.lora_target_modules or PEFT_DEFAULT)
    unknown = [t for t in targets if t not in ATTN and t not in MLP and t != "lm_head"]
    if unknown:
        raise _fail(config, "lora_target_modules", f"{', '.join(unknown)}: torchtune adapts only "
                    f"{', '.join([*ATTN, *MLP, 'lm_head'])}")
    mlp = [t for t in targets if t in MLP]
    if mlp and len(mlp) != len(MLP):
        raise _fail(config, "lora_target_modules", f"torchtune adapts gate_proj, up_proj and down_proj together; "
                    f"got only {', '.join(mlp)}")
    out: dict[str, Any] = {
        "lora_attn_modules": [ATTN[t] for t in ATTN if t in targets],
        "apply_lora_to_mlp": bool(mlp),
        "lora_rank": config.lora_r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
    }
    if spec.has_output_lora:
        out["apply_lora_to_output"] = "lm_head" in targets
    elif "lm_head" in targets:
        raise _fail(config, "lora_target_modules", f"lm_head: torchtune's {spec.family} builders do not adapt it")
    return out


def steps_plan(config: Config, rows: int, world_size: int = 1) -> tuple[int, int | None, int]:
    """(epochs, max_steps_per_epoch, total optimizer steps). torchtune drops the last partial batch and counts
    whole epochs; max_steps within one epoch is exact, beyond it whole epochs are run (and recorded)."""
    per_epoch = rows // (config.micro_batch_size * world_size) // config.gradient_accumulation_steps
    if per_epoch < 1:
        raise EvalsuiteError(f"{config.path}: {rows} rows are fewer than one optimizer step of micro_batch_size "
                             f"{config.micro_batch_size} x gradient_accumulation_steps "
                             f"{config.gradient_accumulation_steps} x {world_size} process(es)")
    if config.max_steps:
        if config.max_steps <= per_epoch:
            return 1, config.max_steps, config.max_steps
        epochs = math.ceil(config.max_steps / per_epoch)
        return epochs, None, epochs * per_epoch
    if float(config.num_epochs) != int(config.num_epochs):
        raise _fail(config, "num_epochs", f"torchtune trains whole epochs; got {config.num_epochs}")
    epochs = int(config.num_epochs)
    return epochs, None, epochs * per_epoch


def optimizer_settings(config: Config) -> dict[str, Any]:
    if config.optimizer not in OPTIMIZERS:
        raise _fail(config, "optimizer", f"{config.optimizer}: the torchtune backend maps "
                    f"{', '.join(OPTIMIZERS)}")
    component, extra = OPTIMIZERS[config.optimizer]
    out: dict[str, Any] = {"_component_": component, "lr": config.learning_rate, **extra}
    if component != "torch.optim.SGD":
        out["weight_decay"] = config.weight_decay
        if config.adam_beta1 is not None or config.adam_beta2 is not None:
            out["betas"] = [config.adam_beta1 if config.adam_beta1 is not None else 0.9,
                            config.adam_beta2 if config.adam_beta2 is not None else 0.999]
        if config.adam_epsilon is not None:
            out["eps"] = config.adam_epsilon
    return out


def scheduler_settings(config: Config, total_steps: int) -> dict[str, Any]:
    if config.lr_scheduler not in SCHEDULERS:
        raise _fail(config, "lr_scheduler", f"{config.lr_scheduler}: the torchtune backend maps "
                    f"{', '.join(SCHEDULERS)}")
    warmup = config.warmup_steps if config.warmup_steps is not None else round(config.warmup_ratio * total_steps)
    return {"_component_": SCHEDULERS[config.lr_scheduler], "num_warmup_steps": int(warmup)}


def dtype_for(config: Config, bf16: bool) -> str:
    if config.fp16:
        raise _fail(config, "fp16", "torchtune's recipes train in bf16 or fp32, not fp16; set bf16 instead")
    return "bf16" if bf16 else "fp32"


@dataclass(frozen=True)
class RecipePaths:
    model_dir: Path
    checkpoint_files: list[str]
    data_file: Path
    work_dir: Path


def recipe_name(num_processes: int) -> str:
    return "lora_finetune_distributed" if num_processes > 1 else "lora_finetune_single_device"


def recipe_config(config: Config, spec: ModelSpec, paths: RecipePaths, *, rows: int, pad_id: int, device: str,
                  bf16: bool, world_size: int = 1) -> dict[str, Any]:
    """The whole recipe config, written as YAML next to the run and passed with ``tune run RECIPE --config``."""
    plan = steps_plan(config, rows, world_size)  # first, so its error comes before any other setting's
    return {**_model_and_files(config, spec, paths, pad_id), **_training_loop(config, plan),
            **_runtime(config, paths, device, bf16)}


def _model_and_files(config: Config, spec: ModelSpec, paths: RecipePaths, pad_id: int) -> dict[str, Any]:
    """What is trained on what: the LoRA model, the base checkpoint, our pre-tokenized rows, and where output goes."""
    return {
        "output_dir": str(paths.work_dir),
        "model": {"_component_": spec.builder, **spec.dims, **lora_settings(config, spec)},
        "tokenizer": {"_component_": f"{COMPONENTS}.pad_only_tokenizer", "pad_id": pad_id,
                      "max_seq_len": config.sequence_len},
        "checkpointer": {
            "_component_": "torchtune.training.FullModelHFCheckpointer",
            "checkpoint_dir": str(paths.model_dir),
            "checkpoint_files": list(paths.checkpoint_files),
            "recipe_checkpoint": None,
            "output_dir": str(paths.work_dir),
            "model_type": spec.model_type,
        },
        "resume_from_checkpoint": False,
        "save_adapter_weights_only": True,
        "dataset": {"_component_": f"{COMPONENTS}.pretokenized_dataset", "path": str(paths.data_file),
                    "packed": bool(config.sample_packing), "max_seq_len": config.sequence_len},
    }


def _training_loop(config: Config, plan: tuple[int, int | None, int]) -> dict[str, Any]:
    epochs, max_steps_per_epoch, total = plan
    return {
        "seed": config.seed,
        "shuffle": True,
        "batch_size": config.micro_batch_size,
        "optimizer": optimizer_settings(config),
        "lr_scheduler": scheduler_settings(config, total),
        "loss": {"_component_": "torchtune.modules.loss.CEWithChunkedOutputLoss"},
        "epochs": epochs,
        "max_steps_per_epoch": max_steps_per_epoch,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "clip_grad_norm": config.max_grad_norm or None,
        "compile": False,
    }


def _runtime(config: Config, paths: RecipePaths, device: str, bf16: bool) -> dict[str, Any]:
    """Device, precision, memory and logging."""
    return {
        "metric_logger": {"_component_": "torchtune.training.metric_logging.DiskLogger",
                          "log_dir": str(paths.work_dir / "logs"), "filename": "log.txt"},
        "log_every_n_steps": config.logging_steps if config.logging_steps else 1,
        "log_peak_memory_stats": device == "cuda",
        "device": device,
        "dtype": dtype_for(config, bf16),
        "enable_activation_checkpointing": bool(config.gradient_checkpointing),
        "enable_activation_offloading": False,
        "profiler": {"_component_": "torchtune.training.setup_torch_profiler", "enabled": False},
    }
