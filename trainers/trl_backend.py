"""TRL backend: SFTTrainer + peft LoRA/QLoRA, fed with evalsuite's own encoding.

Read top to bottom: tokenizer -> samples -> labels (``evalsuite.encode``, shared with the lint) -> model (optionally
4/8-bit via bitsandbytes) -> LoraConfig -> SFTConfig -> train (resuming from the newest checkpoint) -> run dir.
The dataset handed to TRL is pre-tokenized with a ``labels`` column, which TRL uses as is; its collator pads labels
with -100 (never by pad id, so pad == eos cannot mask the EOS label), and ``sample_packing`` uses TRL's BFD packing
whose position ids restart per sample so attention cannot cross samples.
"""

from __future__ import annotations

import logging
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from evalsuite.trainers import common

from evalsuite.backends import TrainOptions
from evalsuite.config import Config, resolve_path
from evalsuite.errors import EvalsuiteError
from evalsuite.rundir import is_run_dir_like, latest_checkpoint

log = logging.getLogger("evalsuite.train")


class TRLBackend:
    name = "trl"

    def available(self) -> tuple[bool, str]:
        try:
            import peft
            import trl
        except ImportError:
            return False, "pip install 'evalsuite[train]'"
        return True, f"trl {trl.__version__}, peft {peft.__version__}"

    def train(self, config: Config, out_dir: Path, options: TrainOptions) -> Path:
        ok, how = self.available()
        if not ok:
            raise EvalsuiteError(f"the trl backend is not installed: {how}")
        resume_from = _prepare_out_dir(out_dir, options)
        started = time.time()
        hf_tok, template, tk = common.load_tokenizer(config)
        encoded, data_files = common.encode_datasets(config, tk, template)
        dataset = common.to_dataset(encoded)
        model = _load_model(config, hf_tok)
        trainer = _build_trainer(config, out_dir, model, hf_tok, dataset)
        log.info("training %s rows, %s tokens on %s", len(encoded), sum(len(e.input_ids) for e in encoded),
                 common.device_summary()["type"])
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        trainer.model.save_pretrained(out_dir)
        train_metrics = {
            "global_step": int(trainer.state.global_step),
            "loss_curve": common.loss_curve(trainer.state.log_history),
            "final_loss": float(result.training_loss),
            "runtime_s": round(time.time() - started, 3),
            "train_runtime_s": float(result.metrics.get("train_runtime", 0.0)),
            "samples_per_s": float(result.metrics.get("train_samples_per_second", 0.0)),
            "peak_cpu_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_cuda_mb": common.peak_cuda_mb(),
            "resumed_from": resume_from.name if resume_from else None,
            "rows": len(encoded),
            "tokens": sum(len(e.input_ids) for e in encoded),
        }
        common.write_run_dir(out_dir, config, hf_tok, tk, template, data_files, backend=self.name,
                             backend_version=_trl_version(), train=train_metrics)
        return out_dir


def _trl_version() -> str:
    import trl

    return str(trl.__version__)


def _prepare_out_dir(out_dir: Path, options: TrainOptions) -> Path | None:
    """Refuse to clobber: a non-empty out dir needs --resume (continue) or --overwrite (start again)."""
    if options.resume:
        ckpt = latest_checkpoint(out_dir) if out_dir.exists() else None
        if ckpt is None:
            raise EvalsuiteError(f"{out_dir}: --resume given but there is no checkpoint-* to resume from")
        log.info("resuming from %s", ckpt)
        return ckpt
    if out_dir.exists() and any(out_dir.iterdir()):
        if not options.overwrite:
            raise EvalsuiteError(f"{out_dir}: output dir is not empty; pass --resume to continue from its newest "
                                 "checkpoint or --overwrite to start again")
        if not is_run_dir_like(out_dir):
            raise EvalsuiteError(f"{out_dir}: refusing to --overwrite a folder that is not an evalsuite run dir")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return None


def _load_model(config: Config, hf_tok: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"revision": config.revision_of_model}
    dtype = common.train_dtype(config)
    kwargs["dtype"] = dtype
    if config.flash_attention:
        kwargs["attn_implementation"] = "flash_attention_2"
    if config.load_in_4bit or config.load_in_8bit:
        compute = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=bool(config.load_in_4bit),
            load_in_8bit=bool(config.load_in_8bit),
            bnb_4bit_quant_type=config.bnb_4bit_quant_type,
            bnb_4bit_compute_dtype=compute[config.bnb_4bit_compute_dtype],
            bnb_4bit_use_double_quant=bool(config.bnb_4bit_use_double_quant),
        )
        kwargs["device_map"] = {"": common.device_summary()["index"]}
    model = AutoModelForCausalLM.from_pretrained(str(resolve_path(config, config.base_model))
                                                 if Path(config.base_model).exists() else config.base_model,
                                                 **kwargs)
    embeddings: Any = model.get_input_embeddings()
    if len(hf_tok) > embeddings.weight.shape[0]:
        model.resize_token_embeddings(len(hf_tok))
    if config.load_in_4bit or config.load_in_8bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(config.gradient_checkpointing))
    return model


def _lora_config(config: Config) -> Any:
    from peft import LoraConfig

    targets: Any = "all-linear" if config.lora_target_linear else config.lora_target_modules
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, modules_to_save=config.lora_modules_to_save, task_type="CAUSAL_LM")


def _build_trainer(config: Config, out_dir: Path, model: Any, hf_tok: Any, dataset: Any) -> Any:
    from trl import SFTConfig, SFTTrainer

    bf16, fp16 = common.mixed_precision(config)
    args = SFTConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=config.micro_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.num_epochs,
        max_steps=config.max_steps or -1,
        optim=config.optimizer,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps if config.warmup_steps is not None else config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        **{k: config.values[k] for k in ("adam_beta1", "adam_beta2", "adam_epsilon")
           if config.values[k] is not None},
        gradient_checkpointing_kwargs=config.gradient_checkpointing_kwargs,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit,
        bf16=bf16,
        fp16=fp16,
        tf32=bool(config.tf32) if common.device_summary()["type"] == "cuda" else None,
        gradient_checkpointing=bool(config.gradient_checkpointing),
        seed=config.seed,
        data_seed=config.seed,
        max_length=config.sequence_len,
        packing=bool(config.sample_packing),
        packing_strategy="bfd",
        use_cpu=common.device_summary()["type"] == "cpu",
        report_to="none",
        dataset_num_proc=None,
    )
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=hf_tok,
                      peft_config=_lora_config(config))
