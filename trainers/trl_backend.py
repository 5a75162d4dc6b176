"""TRL backend: SFTTrainer + peft LoRA/QLoRA, fed with evalsuite's own encoding.

Read top to bottom: tokenizer -> samples -> labels (``evalsuite.chat.encode``, shared with the lint) -> model
(optionally 4/8-bit via bitsandbytes) -> LoraConfig -> SFTConfig -> train (resuming from the newest checkpoint)
-> run dir.
The dataset handed to TRL is pre-tokenized with a ``labels`` column, which TRL uses as is; its collator pads labels
with -100 (never by pad id, so pad == eos cannot mask the EOS label), and ``sample_packing`` uses TRL's BFD packing
whose position ids restart per sample so attention cannot cross samples.
"""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path
from typing import Any

from evalsuite.trainers import common

from evalsuite.chat.encode import Encoded
from evalsuite.config.load import Config, resolve_path
from evalsuite.errors import EvalsuiteError
from evalsuite.train.backends import TrainOptions, prepare_out_dir

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
        resume_from = prepare_out_dir(out_dir, options, config)
        started = time.time()
        hf_tok, template, tk = common.load_tokenizer(config)
        encoded, data_files = common.encode_datasets(config, tk, template)
        dataset = common.to_dataset(encoded)
        model = _load_model(config, hf_tok)
        trainer = _build_trainer(config, out_dir, model, hf_tok, dataset)
        start = _start_step_callback()
        trainer.add_callback(start)
        timer = common.step_timer()
        trainer.add_callback(timer)
        trainer.add_callback(_settings_callback(common.config_summary(config)))
        log.info("training %s rows, %s tokens on %s", len(encoded), sum(len(e.input_ids) for e in encoded),
                 common.device_summary()["type"])
        with common.write_failures_explained(out_dir):
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            # save_model on every rank: under FSDP / DeepSpeed ZeRO-3 gathering the adapter is a collective; the
            # Trainer then writes from rank 0 only. Everything after this is rank 0's alone.
            trainer.save_model(str(out_dir))
        if not trainer.is_world_process_zero():
            return out_dir
        (out_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; the manifest records the settings
        log.info("writing the run dir (rank %d of %d)", trainer.args.process_index, trainer.args.world_size)
        train = _train_metrics(config, trainer, result, encoded, started=started, resume_from=resume_from,
                               start_step=start.step, step_time_s=timer.median_s())
        with common.write_failures_explained(out_dir):
            common.write_run_dir(out_dir, config, hf_tok, tk, template, data_files, backend=self.name,
                                 backend_version=_trl_version(), train=train)
        return out_dir


def _train_metrics(config: Config, trainer: Any, result: Any, encoded: list[Encoded], *, started: float,
                   resume_from: Path | None, start_step: int | None, step_time_s: float | None) -> dict[str, Any]:
    """The manifest's ``train`` section, read from the Trainer after training (rank 0)."""
    return {
        "global_step": int(trainer.state.global_step),
        "loss_curve": common.loss_curve(trainer.state.log_history),
        "final_loss": float(result.training_loss),
        "runtime_s": round(time.time() - started, 3),
        "train_runtime_s": float(result.metrics.get("train_runtime", 0.0)),
        "samples_per_s": float(result.metrics.get("train_samples_per_second", 0.0)),
        "step_time_s": step_time_s,  # the median optimizer step of this process, the first left out
        "peak_cpu_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_cuda_mb": common.peak_cuda_mb(),
        "resumed_from": resume_from.name if resume_from else None,
        "start_step": start_step,  # what the Trainer restored, not what was asked: 0 unless resumed
        "rows": len(encoded),
        "tokens": sum(len(e.input_ids) for e in encoded),
        "effective_batch_size": config.micro_batch_size * config.gradient_accumulation_steps
        * int(trainer.args.world_size),
    }


def _start_step_callback() -> Any:
    """A callback that records the global step the Trainer starts this process's training at: the checkpoint's
    step when it really resumed, 0 otherwise."""
    from transformers import TrainerCallback

    class StartStep(TrainerCallback):
        step: int | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step = int(state.global_step)

    return StartStep()


def _settings_callback(summary: dict[str, Any]) -> Any:
    """A callback that records the config summary in each checkpoint (rank 0), so that `--resume` with other
    settings is refused naming them (``evalsuite.train.backends.resume_mismatches``)."""
    from transformers import TrainerCallback

    from evalsuite.files import write_json_atomic
    from evalsuite.train.backends import SETTINGS_FILE

    class Settings(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():
                write_json_atomic(folder / SETTINGS_FILE, summary)

    return Settings()


def _trl_version() -> str:
    import trl

    return str(trl.__version__)


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
    # peft annotates lora_alpha as int; it only divides by r, and axolotl configs may give a float alpha.
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,  # type: ignore[arg-type]
                      lora_dropout=config.lora_dropout,
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
        **{k: v for k, v in config.settings(("adam_beta1", "adam_beta2", "adam_epsilon")).items() if v is not None},
        # passed through unchecked, as axolotl does; transformers validates it
        gradient_checkpointing_kwargs=config.gradient_checkpointing_kwargs,  # type: ignore[arg-type]
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
        **scale_out_args(config),
    )
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=hf_tok,
                      peft_config=_lora_config(config))


def scale_out_args(config: Config) -> dict[str, Any]:
    """The config's ``deepspeed`` / ``fsdp`` / ``fsdp_config`` as TrainingArguments options (axolotl's spelling is
    also the Trainer's: a DeepSpeed JSON path; an FSDP option list such as ``[full_shard, auto_wrap]``; a dict whose
    ``fsdp_`` prefixes the Trainer strips). They take effect under `evalsuite train --num-processes N`."""
    out: dict[str, Any] = {}
    if config.deepspeed:
        path = resolve_path(config, config.deepspeed)
        if not path.is_file():
            raise EvalsuiteError(f"{config.where('deepspeed')}: deepspeed: no such DeepSpeed config file: {path}")
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise EvalsuiteError(f"{config.where('deepspeed')}: deepspeed: the deepspeed package is not installed "
                                 "(pip install deepspeed; it needs a CUDA toolchain)") from None
        out["deepspeed"] = str(path)
    if config.fsdp:
        out["fsdp"] = config.fsdp
        if config.fsdp_config:
            if not isinstance(config.fsdp_config, dict):
                raise EvalsuiteError(f"{config.where('fsdp_config')}: fsdp_config: expected a mapping of FSDP "
                                     f"settings, got {config.fsdp_config!r}")
            out["fsdp_config"] = dict(config.fsdp_config)
    if out and common.device_summary()["type"] != "cuda":
        # Seen here: on CPU the HF Trainer silently falls back to plain DDP (gloo) for FSDP.
        log.warning("%s: %s set, but this is a CPU run: the Trainer runs plain DDP; FSDP and DeepSpeed need CUDA",
                    config.path, " and ".join(k for k in ("deepspeed", "fsdp") if k in out))
    return out
