"""TRL backend on the embedded tiny model, CPU, a few steps each: LoRA, QLoRA 4-bit NF4, 8-bit, packing, labels,
resume after SIGKILL, and the run dir contract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from evalsuite.config.load import load_config
from evalsuite.errors import EvalsuiteError
from evalsuite.rundir.contract import open_run_dir
from evalsuite.train.backends import TrainOptions, get_backend

pytestmark = pytest.mark.slow

CHAT_ROWS = [
    {"messages": [{"role": "system", "content": "Repeat in uppercase."}, {"role": "user", "content": "hello"},
                  {"role": "assistant", "content": "HELLO"}, {"role": "user", "content": "привет"},
                  {"role": "assistant", "content": "ПРИВЕТ"}]},
] + [{"messages": [{"role": "user", "content": f"word {i}"}, {"role": "assistant", "content": f"WORD {i}"}]}
     for i in range(40)]


def write_config(tmp: Path, base: Path, **overrides: Any) -> Path:
    data = tmp / "data.jsonl"
    if not data.exists():
        data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in CHAT_ROWS) + "\n", encoding="utf-8")
    values: dict[str, Any] = {
        "base_model": str(base), "sequence_len": 128, "micro_batch_size": 4, "max_steps": 2, "learning_rate": 1e-3,
        "lora_r": 4, "lora_alpha": 8, "lora_target_linear": True, "logging_steps": 1, "seed": 1,
        "output_dir": str(tmp / "run"),
    }
    values.update(overrides)
    lines = [f"{k}: {json.dumps(v)}" for k, v in values.items()]
    lines += ["datasets:", f"  - path: {data}", "    type: chat_template"]
    cfg = tmp / "config.yaml"
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cfg


def train(cfg: Path, **opts: bool) -> Path:
    config = load_config(cfg)
    return get_backend("trl").train(config, Path(config.output_dir), TrainOptions(**opts))


def test_lora_run_dir_is_complete_and_loads(tmp_path: Path, tiny_base: Path) -> None:
    run = train(write_config(tmp_path, tiny_base))
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja", "generation_config.json", "evalsuite_manifest.json"):
        assert (run / name).is_file(), name
    rd = open_run_dir(run)  # validates the manifest
    m = rd.manifest
    assert m["backend"]["name"] == "trl" and m["train"]["global_step"] == 2
    import torch

    on_cuda = torch.cuda.is_available()  # this test also runs in the GPU check (benchmarks/gpu_check.sh)
    assert m["versions"]["torch"] and m["versions"]["peft"] and m["device"]["type"] == ("cuda" if on_cuda else "cpu")
    assert set(m["hashes"]) >= {"config", "data", "template", "tokenizer"}
    assert m["train"]["loss_curve"] and m["train"]["peak_cpu_rss_mb"] > 0
    assert (m["train"]["peak_cuda_mb"] or 0) > 0 if on_cuda else m["train"]["peak_cuda_mb"] is None
    # the median of the timed steps lies within the run: two steps cannot take longer than the whole training
    assert 0 < m["train"]["step_time_s"] < m["train"]["train_runtime_s"]
    # the server must stop on the template's end-of-turn token
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(run / "tokenizer.json"))
    assert m["template"]["end_of_turn"] == "<|im_end|>"
    assert tok.token_to_id("<|im_end|>") in rd.stop_token_ids
    base_template = json.loads((tiny_base / "tokenizer_config.json").read_text())["chat_template"]
    assert (run / "chat_template.jinja").read_text() == base_template  # the exact template used in training
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), str(run))
    assert any("lora_A" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize(("cuda", "bf16", "fp16", "bits", "expected"), [
    (False, "auto", False, None, "float32"),          # CPU: fp32 always (the demo's and the tests' dtype)
    (False, "auto", False, "load_in_4bit", "float32"),
    (True, "auto", False, None, "bfloat16"),          # CUDA + bf16: the frozen LoRA base in 16 bits, not fp32
    (True, False, True, None, "float16"),
    (True, False, False, None, "float32"),            # no mixed precision asked: full precision
    (True, False, False, "load_in_8bit", "float16"),  # 8-bit layers compute in 16 bits
])
def test_base_dtype_follows_the_device_and_precision(tmp_path: Path, tiny_base: Path, monkeypatch: pytest.MonkeyPatch,
                                                     cuda: bool, bf16: Any, fp16: bool, bits: str | None,
                                                     expected: str) -> None:
    import torch
    from evalsuite.trainers import common

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(common, "device_summary", lambda: {"type": "cuda" if cuda else "cpu", "index": 0})
    overrides: dict[str, Any] = {"bf16": bf16, "fp16": fp16, **({bits: True} if bits else {})}
    assert common.train_dtype(load_config(write_config(tmp_path, tiny_base, **overrides))) == getattr(torch, expected)


@pytest.mark.parametrize(("native", "bf16", "expected", "warned"), [
    (False, "auto", False, False),  # AVX2 only: emulated bf16 was 20x slower per step, so auto stays fp32
    (True, "auto", True, False),    # AVX512-BF16 / AMX: auto takes bf16 autocast
    (False, True, True, True),      # asked for explicitly: kept, with a warning naming the file:line
    (True, True, True, False),
    (False, False, False, False),
])
def test_cpu_mixed_precision_follows_native_bf16(tmp_path: Path, tiny_base: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture, native: bool, bf16: Any,
                                                 expected: bool, warned: bool) -> None:
    import torch
    from evalsuite.trainers import common

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: native)
    config = load_config(write_config(tmp_path, tiny_base, bf16=bf16))
    monkeypatch.setattr(common, "device_summary", lambda: {"type": "cpu", "index": "cpu"})
    with caplog.at_level("WARNING", logger="evalsuite.train"):
        assert common.train_dtype(config) == torch.float32  # the base stays fp32 on CPU, and says nothing
        assert common.mixed_precision(config) == (expected, False)
    warnings = [r.getMessage() for r in caplog.records if "native bf16" in r.getMessage()]
    assert bool(warnings) == warned
    assert len(warnings) == int(warned)  # once per run: train_dtype and the Trainer's settings both ask on CPU
    if warned:
        assert str(config.path) in warnings[0] and "bf16: auto or false" in warnings[0]


def test_train_on_inputs_false_trains_only_assistant_turns(tmp_path: Path, tiny_base: Path) -> None:
    from trainers_helpers import build_trainer_only

    trainer, encoded, tk = build_trainer_only(write_config(tmp_path, tiny_base))
    first = encoded[0]
    trained = [t for t, lab in zip(first.input_ids, first.labels) if lab != -100]
    # exactly the two assistant contents, each with its end-of-turn token
    assert tk.decode(trained) == "HELLO<|im_end|>ПРИВЕТ<|im_end|>"
    assert {r for r, lab in zip(first.roles, first.labels) if lab != -100} == {"assistant"}
    # TRL keeps our labels as they are
    assert trainer.train_dataset[0]["labels"] == first.labels


def test_train_on_inputs_true_trains_the_prompt_too(tmp_path: Path, tiny_base: Path) -> None:
    from trainers_helpers import build_trainer_only

    _, encoded, _ = build_trainer_only(write_config(tmp_path, tiny_base, train_on_inputs=True))
    roles_trained = {r for r, lab in zip(encoded[0].roles, encoded[0].labels) if lab != -100}
    assert {"system", "user", "assistant"} <= roles_trained


def test_packing_restarts_positions_per_sample(tmp_path: Path, tiny_base: Path) -> None:
    from trainers_helpers import build_trainer_only

    trainer, _, _ = build_trainer_only(write_config(tmp_path, tiny_base, sample_packing=True, micro_batch_size=2))
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    pos = batch["position_ids"][0]
    starts = (pos == 0).nonzero().flatten().tolist()
    assert len(starts) >= 3, "several samples packed into one row"
    assert "attention_mask" not in batch  # attention follows position ids (block-diagonal), not one big causal mask
    for s in starts:
        assert batch["labels"][0][s].item() == -100  # no sample learns to predict across the boundary
    # and it trains
    run = train(write_config(tmp_path, tiny_base, sample_packing=True, output_dir=str(tmp_path / "packed")))
    assert open_run_dir(run).manifest["config"]["sample_packing"] is True


def test_qlora_4bit_nf4_loads_quantized_and_trains(tmp_path: Path, tiny_base: Path) -> None:
    import bitsandbytes as bnb
    from evalsuite.trainers import trl_backend

    cfg = write_config(tmp_path, tiny_base, adapter="qlora", load_in_4bit=True, bnb_4bit_compute_dtype="float32",
                       bnb_4bit_use_double_quant=True, optimizer="paged_adamw_8bit", gradient_checkpointing=True)
    config = load_config(cfg)
    from evalsuite.trainers.common import load_tokenizer

    model = trl_backend._load_model(config, load_tokenizer(config)[0])
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.weight.quant_state.quant_type == "nf4" for m in layers)
    assert all(m.weight.quant_state.nested for m in layers)  # double quantisation
    run = train(cfg)
    manifest = open_run_dir(run).manifest
    assert manifest["config"]["load_in_4bit"] is True and manifest["config"]["adapter"] == "qlora"
    assert manifest["train"]["global_step"] == 2


def test_8bit_loading_and_8bit_optimizer(tmp_path: Path, tiny_base: Path) -> None:
    import bitsandbytes as bnb
    from evalsuite.trainers import trl_backend
    from evalsuite.trainers.common import load_tokenizer

    cfg = write_config(tmp_path, tiny_base, load_in_8bit=True, optimizer="adamw_bnb_8bit")
    config = load_config(cfg)
    model = trl_backend._load_model(config, load_tokenizer(config)[0])
    assert any(isinstance(m, bnb.nn.Linear8bitLt) for m in model.modules())
    run = train(cfg)
    assert open_run_dir(run).manifest["config"]["load_in_8bit"] is True


def test_refuses_non_empty_output_dir(tmp_path: Path, tiny_base: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    cfg = write_config(tmp_path, tiny_base)
    with pytest.raises(EvalsuiteError, match="not empty; pass --resume"):
        train(cfg)
    with pytest.raises(EvalsuiteError, match="not an evalsuite run dir"):
        train(cfg, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(EvalsuiteError, match="no checkpoint"):
        train(cfg, resume=True)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "evalsuite.cli", *args]


def adapter_tensors(run: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(run / "adapter_model.safetensors"))


def test_resume_after_sigkill_continues_from_the_checkpoint_and_matches_an_uninterrupted_run(
        tmp_path: Path, tiny_base: Path) -> None:
    """kill -9 mid-run, then --resume: the resumed process starts at the checkpoint's step (not at 0) and its final
    adapter is bit-identical to an uninterrupted run with the same seed (weights, optimizer, scheduler, RNG and data
    order all restored). A run that ignored the checkpoint would also reach max_steps, and, being deterministic on
    CPU, even the same weights: only the start step tells them apart."""
    steps = 60
    killed_cfg = write_config(tmp_path, tiny_base, max_steps=steps, save_steps=10, micro_batch_size=2,
                              output_dir=str(tmp_path / "killed"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_cli("train", str(killed_cfg)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if any((c / "trainer_state.json").exists() for c in (tmp_path / "killed").glob("checkpoint-*")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "training finished before it could be killed; raise max_steps"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "evalsuite_manifest.json").exists()
    from evalsuite.rundir.contract import latest_checkpoint

    checkpoint = latest_checkpoint(tmp_path / "killed")
    assert checkpoint is not None
    at = int(checkpoint.name.split("-")[1])
    assert 0 < at < steps
    resumed = subprocess.run(_cli("train", str(killed_cfg), "--resume"), capture_output=True, text=True, env=env,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    train_info = open_run_dir(tmp_path / "killed").manifest["train"]
    assert train_info["resumed_from"] == checkpoint.name
    assert train_info["start_step"] == at  # the Trainer really restored the checkpoint's state
    assert train_info["global_step"] == steps
    full = train(write_config(tmp_path, tiny_base, max_steps=steps, save_steps=1000, micro_batch_size=2,
                              output_dir=str(tmp_path / "full")))
    assert open_run_dir(full).manifest["train"]["start_step"] == 0
    import torch

    ours, reference = adapter_tensors(tmp_path / "killed"), adapter_tensors(full)
    assert sorted(ours) == sorted(reference) and ours
    different = [k for k in ours if not torch.equal(ours[k], reference[k])]
    assert not different, f"{len(different)} of {len(ours)} tensors differ from the uninterrupted run: {different[:3]}"
    saved = adapter_tensors(checkpoint)  # the comparison has teeth: the steps after the checkpoint moved weights
    assert any(not torch.equal(saved[k], reference[k]) for k in reference)


def test_the_trainer_trains_what_the_lint_shows_for_reasoning_and_weights(tmp_path: Path, tiny_base: Path) -> None:
    """train_on_reasoning: false and weight 0 reach TRL's dataset, and the lint's example labels are those labels."""
    from trainers_helpers import build_trainer_only

    from evalsuite.lint.runner import run_lint
    from evalsuite.lint.setup import from_config

    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "NO", "weight": 0},
                          {"role": "user", "content": "again"},
                          {"role": "assistant", "content": "<think>\nshout it\n</think>\n\nHI"}]}] * 4
    data = tmp_path / "reasoning.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = write_config(tmp_path, tiny_base, train_on_reasoning=False)
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "data.jsonl"), str(data)), encoding="utf-8")
    trainer, encoded, tk = build_trainer_only(cfg)
    first = encoded[0]
    assert tk.decode([t for t, lab in zip(first.input_ids, first.labels) if lab != -100]) == "HI<|im_end|>"
    assert trainer.train_dataset[0]["labels"] == first.labels
    report = run_lint(from_config(cfg), show=1)
    shown = report.shown[0]
    assert shown["ids"] == first.input_ids
    assert shown["labels"][1:] == first.labels[1:]  # the lint also masks label 0 (never predicted)
    assert report.stats["trainable_fraction_by_role"]["reasoning"] == 0.0
