"""What every backend shares: tokenizer + template resolution, encoding to a dataset, device facts, and writing the
run dir (adapter is saved by the backend; tokenizer, template, generation config and manifest are written here)."""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evalsuite.chat.encode import Encoded, EncodeOptions, encode_sample, end_of_turn_token
from evalsuite.chat.template import resolve_template
from evalsuite.chat.tokenizer import TokenizerInfo, from_transformers
from evalsuite.config.load import Config, resolve_path
from evalsuite.config.rows import load_samples
from evalsuite.errors import EvalsuiteError
from evalsuite.files import (
    atomic_write_text,
    sha256_file,
    sha256_files,
    sha256_json,
    sha256_text,
    write_failure,
    write_json_atomic,
)
from evalsuite.launch import world_size
from evalsuite.rundir.contract import GENERATION_CONFIG, TEMPLATE_FILE, latest_checkpoint
from evalsuite.rundir.manifest import MANIFEST_NAME, git_state, new_manifest, package_versions

log = logging.getLogger("evalsuite.train")


def model_ref(config: Config, value: str) -> str:
    p = resolve_path(config, value)
    return str(p) if p.exists() else value


def load_tokenizer(config: Config) -> tuple[Any, str | None, TokenizerInfo]:
    """The HF tokenizer (saved into the run dir), the chat template in force, and our view of the tokenizer.

    Plain AutoTokenizer, as every trainer uses; the lint replays its class choice (``evalsuite.chat.tokenizer_compat``)
    so both see the same ids."""
    from transformers import AutoTokenizer

    source = model_ref(config, config.tokenizer_config or config.base_model)
    try:
        hf_tok = AutoTokenizer.from_pretrained(source, revision=config.revision_of_model)
    except OSError as e:
        raise EvalsuiteError(f"{config.where('base_model')}: base_model: cannot load a tokenizer from "
                             f"{source!r}: {str(e).splitlines()[0]}") from None
    for name, token in (config.special_tokens or {}).items():
        if getattr(hf_tok, name, None) != token:
            hf_tok.add_special_tokens({name: token})
    if hf_tok.pad_token is None:
        # Safe here: our labels come from the encoder and TRL pads labels with -100, never by pad id.
        hf_tok.pad_token = hf_tok.eos_token
    template = resolve_template(config.chat_template, config.chat_template_jinja, hf_tok.chat_template,
                                config.where("chat_template"))
    hf_tok.chat_template = template
    return hf_tok, template, from_transformers(hf_tok, template, source)


def encode_datasets(config: Config, tk: TokenizerInfo, template: str | None) -> tuple[list[Encoded], list[Path]]:
    if not config.datasets:
        raise EvalsuiteError(f"{config.path}: datasets: at least one dataset is needed to train")
    opts = EncodeOptions(train_on_inputs=bool(config.train_on_inputs), max_length=config.sequence_len,
                         train_on_reasoning=bool(config.train_on_reasoning))
    encoded: list[Encoded] = []
    files: list[Path] = []
    for spec in config.datasets:
        for sample in load_samples(spec, base_dir=config.path.parent):
            encoded.append(encode_sample(sample, tk, template, opts))
        p = resolve_path(config, spec.path)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += sorted(x for x in p.iterdir() if x.is_file())
    trainable = [e for e in encoded if any(label != -100 for label in e.labels)]
    if not trainable:
        raise EvalsuiteError(f"{config.path}: no row has a trained token (run `evalsuite lint {config.path}`)")
    return trainable, files


def to_dataset(encoded: list[Encoded]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [e.input_ids for e in encoded], "labels": [e.labels for e in encoded]})


def device_summary() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        idx = torch.cuda.current_device()
        return {"type": "cuda", "name": torch.cuda.get_device_name(idx), "count": torch.cuda.device_count(),
                "index": idx}
    import platform

    return {"type": "cpu", "name": platform.processor() or platform.machine(), "count": 1, "index": "cpu"}


def peak_cuda_mb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def train_dtype(config: Config) -> Any:
    """The dtype the base is loaded in. On CUDA with bf16/fp16 mixed precision the frozen base of a LoRA run is
    loaded in 16 bits, as axolotl and the seeds' "16-bit" rows do: in fp32 it would take twice the memory for weights
    that never get a gradient (peft keeps the adapter's own weights in fp32). On CPU everything stays fp32, which is
    what the demo and the tests train in."""
    import torch

    if device_summary()["type"] == "cpu":  # before mixed_precision, whose CPU bf16 warning the Trainer's call gives
        return torch.float32
    bf16, fp16 = mixed_precision(config)
    if not (bf16 or fp16 or config.load_in_4bit or config.load_in_8bit):
        return torch.float32
    return torch.bfloat16 if bf16 else torch.float16


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX). Without it torch's CPU autocast emulates bf16
    and a step gets far slower, not faster: a 4 x 60-token LoRA step on SmolLM2-135M took 57 s in bf16 against 2.8 s
    in fp32 on a 2-core AVX2 EPYC (measured for issue 28)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def mixed_precision(config: Config) -> tuple[bool, bool]:
    """(bf16, fp16) for the Trainer. ``bf16: auto`` means bf16 where the device computes in it natively: a CUDA card
    that supports it, or a CPU with AVX512-BF16/AMX; fp16 is CUDA only."""
    import torch

    on_cuda = torch.cuda.is_available()
    bf16 = config.bf16
    if bf16 == "auto":
        bf16 = bool(torch.cuda.is_bf16_supported()) if on_cuda else cpu_has_native_bf16()
    elif bf16 and not on_cuda and not cpu_has_native_bf16():
        log.warning("%s: bf16: true on a CPU without native bf16 (AVX512-BF16 or AMX): autocast emulates it, about "
                    "20x slower per step than fp32 (measured: 57 s against 2.8 s); set bf16: auto or false",
                    config.where("bf16"))
    return bool(bf16), bool(config.fp16) and on_cuda


def step_timer() -> Any:
    """A Trainer callback timing each optimizer step by the wall clock. On CUDA it synchronizes at both ends, since
    kernels run asynchronously and the Trainer only waits for them when it logs a loss."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._t0: float | None = None

        def _now(self) -> float:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._t0 = self._now()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self._t0 is not None:
                self.times.append(self._now() - self._t0)
                self._t0 = None

        def median_s(self) -> float | None:
            """The median step, the first left out where there are more (it pays for allocator growth, kernel
            selection and lazy initialisation, not for the setting being measured)."""
            times = sorted(self.times[1:] or self.times)
            return round(statistics.median(times), 4) if times else None

    return StepTimer()


def loss_curve(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    return [{"step": int(h["step"]), "loss": float(h["loss"])} for h in log_history if "loss" in h]


def stop_token_ids(hf_tok: Any, tk: TokenizerInfo, template: str | None) -> tuple[list[int], str | None]:
    """eos of the tokenizer plus the template's end-of-turn token: the server must stop on both."""
    ids: list[int] = []
    eot = end_of_turn_token(template, tk) if template else None
    for token in (eot, hf_tok.eos_token):
        tid = tk.token_id(token)
        if tid is not None and tid not in ids:
            ids.append(tid)
    return ids, eot


def write_run_dir(out_dir: Path, config: Config, hf_tok: Any, tk: TokenizerInfo, template: str | None,
                  data_files: list[Path], *, backend: str, backend_version: str, train: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> None:
    hf_tok.save_pretrained(out_dir)
    if template is not None:
        atomic_write_text(out_dir / TEMPLATE_FILE, template)
    stops, eot = stop_token_ids(hf_tok, tk, template)
    gen = {"eos_token_id": stops, "pad_token_id": tk.token_id(hf_tok.pad_token), "do_sample": False}
    bos = tk.token_id(hf_tok.bos_token)
    if bos is not None:
        gen["bos_token_id"] = bos
    write_json_atomic(out_dir / GENERATION_CONFIG, gen)
    tokenizer_json = out_dir / "tokenizer.json"
    manifest = new_manifest(
        base_model=config.base_model,
        base_model_revision=config.revision_of_model,
        backend={"name": backend, "version": backend_version},
        versions=package_versions(),
        hashes={
            "config": sha256_file(config.path),
            "data": sha256_files(data_files) if data_files else sha256_json([d.path for d in config.datasets]),
            "template": sha256_text(template or ""),
            "tokenizer": sha256_file(tokenizer_json) if tokenizer_json.exists() else sha256_text(str(tk.path)),
        },
        git=git_state(Path.cwd()),
        device={k: v for k, v in device_summary().items() if k != "index"} | {"world_size": world_size()},
        config=config_summary(config),
        template={"end_of_turn": eot, "stop_token_ids": stops},
        train=train,
        **(extra or {}),
    )
    write_json_atomic(out_dir / MANIFEST_NAME, manifest)


SUMMARY_KEYS = ("adapter", "lora_r", "lora_alpha", "lora_dropout", "lora_target_linear", "lora_target_modules",
                "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_compute_dtype",
                "bnb_4bit_use_double_quant", "optimizer", "learning_rate", "lr_scheduler", "sequence_len",
                "micro_batch_size", "gradient_accumulation_steps", "num_epochs", "max_steps", "sample_packing",
                "train_on_inputs", "bf16", "fp16", "gradient_checkpointing", "seed", "chat_template")


def config_summary(config: Config) -> dict[str, Any]:
    return json.loads(json.dumps(config.settings(SUMMARY_KEYS), default=str))


@contextmanager
def write_failures_explained(out_dir: Path) -> Iterator[None]:
    """A write that fails while training or saving (disk full, quota, permissions) becomes one error that says what
    is left on disk and how to go on: a checkpoint cut short lacks trainer_state.json and `--resume` skips it."""
    try:
        yield
    except Exception as e:  # OSError, torch's RuntimeError, safetensors' SafetensorError
        reason = write_failure(e)
        if reason is None:
            raise
        ckpt = latest_checkpoint(out_dir) if out_dir.is_dir() else None
        then = (f"`evalsuite train CONFIG --resume` continues from {ckpt.name}" if ckpt is not None
                else "run again (--overwrite clears what was written)")
        raise EvalsuiteError(f"{out_dir}: training stopped: {reason}; free space or fix the folder, then {then}") \
            from None
