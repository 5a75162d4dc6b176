"""Contract tests of the axolotl and torchtune backends' config mappings (always run; neither package is needed):
the seeds' configs (Phi-3 SQuAD QLoRA, Gemma-2 QLoRA, torchtune llama3/8B_lora_single_device from seed 004), the
errors for settings a backend cannot honour, and the registry / `evalsuite backends` listing."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_helpers import run_cli
from evalsuite.trainers import axolotl_backend as ax
from evalsuite.trainers import torchtune_mapping as tm

from evalsuite.config.load import Config, load_config
from evalsuite.errors import EvalsuiteError
from evalsuite.train.backends import BUILTIN, TrainOptions, get_backend

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "configs"
PATHS = tm.RecipePaths(Path("/models/base"), ["model-00001-of-00004.safetensors"], Path("/run/train.jsonl"),
                       Path("/run/torchtune"))
QWEN2_JSON = {"model_type": "qwen2", "vocab_size": 448, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "hidden_size": 128, "intermediate_size": 384, "max_position_embeddings": 256,
              "rms_norm_eps": 1e-6, "rope_parameters": {"rope_theta": 10000.0}, "tie_word_embeddings": True}


def quiet_load(path: Path) -> Config:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the seed configs carry axolotl keys we ignore, on purpose
        return load_config(path)


def edited(tmp: Path, source: Path, **changes: Any) -> Config:
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data.update(changes)
    out = tmp / source.name
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return quiet_load(out)


def assert_subset(actual: Any, expected: Any, where: str = "") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        for key, value in expected.items():
            assert key in actual, f"{where}.{key} missing"
            assert_subset(actual[key], value, f"{where}.{key}")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


# --- torchtune ---------------------------------------------------------------------------------------------------

def test_seed004_maps_onto_the_published_llama3_8b_lora_single_device_settings() -> None:
    config = quiet_load(CONFIGS / "torchtune_seed004_evalsuite.yaml")
    published = yaml.safe_load((CONFIGS / "torchtune_llama3_8B_lora_single_device.yaml").read_text())
    spec = tm.model_spec(config, None)
    cfg = tm.recipe_config(config, spec, PATHS, rows=1000, pad_id=0, device="cuda", bf16=True)
    assert tm.recipe_name(1) == published.pop("recipe")
    assert cfg["model"] == published.pop("model")  # every model key, nothing extra
    assert_subset(cfg, published)
    assert cfg["checkpointer"]["checkpoint_files"] == PATHS.checkpoint_files
    assert cfg["dataset"]["path"] == str(PATHS.data_file) and cfg["save_adapter_weights_only"] is True
    assert tm.recipe_name(2) == "lora_finetune_distributed"


def test_seed004_as_qlora_uses_the_qlora_builder() -> None:
    config = replace(quiet_load(CONFIGS / "torchtune_seed004_evalsuite.yaml"), adapter="qlora")
    assert tm.model_spec(config, None).builder == "torchtune.models.llama3.qlora_llama3_8b"


def test_phi3_squad_qlora_seed_config() -> None:
    config = quiet_load(CONFIGS / "phi3_squad_qlora.yaml")
    spec = tm.model_spec(config, None)
    cfg = tm.recipe_config(config, spec, PATHS, rows=100, pad_id=32000, device="cuda", bf16=True)
    assert cfg["model"] == {
        "_component_": "torchtune.models.phi3.qlora_phi3_mini",
        "lora_attn_modules": ["q_proj", "k_proj", "v_proj", "output_proj"],  # lora_target_linear
        "apply_lora_to_mlp": True, "apply_lora_to_output": False,
        "lora_rank": 64, "lora_alpha": 32.0, "lora_dropout": 0.05,
    }
    assert cfg["checkpointer"]["model_type"] == "PHI3_MINI"
    assert cfg["optimizer"] == {"_component_": "torch.optim.AdamW", "lr": 3e-6, "weight_decay": 0.1,
                                "betas": [0.9, 0.95], "eps": 1e-5}
    assert cfg["lr_scheduler"]["num_warmup_steps"] == 100
    assert (cfg["batch_size"], cfg["gradient_accumulation_steps"], cfg["epochs"]) == (2, 1, 1)
    assert cfg["clip_grad_norm"] == 1.0 and cfg["enable_activation_checkpointing"] is True
    assert cfg["tokenizer"]["max_seq_len"] == 4096 and cfg["dataset"]["packed"] is False
    assert cfg["tokenizer"]["pad_id"] == 32000 and cfg["dtype"] == "bf16"


def test_gemma2_qlora_seed_config() -> None:
    config = quiet_load(CONFIGS / "gemma2_qlora.yaml")
    spec = tm.model_spec(config, None)
    cfg = tm.recipe_config(config, spec, PATHS, rows=100, pad_id=0, device="cpu", bf16=False)
    assert cfg["model"]["_component_"] == "torchtune.models.gemma2.qlora_gemma2_9b"
    assert "apply_lora_to_output" not in cfg["model"]  # gemma2's builders do not take it
    assert cfg["model"]["lora_attn_modules"] == ["q_proj", "k_proj", "v_proj", "output_proj"]
    assert (cfg["model"]["lora_rank"], cfg["model"]["lora_alpha"], cfg["model"]["lora_dropout"]) == (32, 16.0, 0.05)
    assert cfg["optimizer"]["_component_"] == "bitsandbytes.optim.AdamW8bit"
    # 100 rows / (micro batch 1 x accumulation 4) = 25 steps per epoch, 4 epochs; warmup_ratio 0.1 of 100 steps
    assert (cfg["epochs"], cfg["max_steps_per_epoch"]) == (4, None)
    assert cfg["lr_scheduler"]["num_warmup_steps"] == 10
    assert cfg["dataset"]["packed"] is True and cfg["dataset"]["max_seq_len"] == 2048
    assert cfg["checkpointer"]["model_type"] == "GEMMA2" and cfg["dtype"] == "fp32"


def test_local_qwen2_and_llama_use_component_builders_sized_from_config_json(tmp_path: Path) -> None:
    config = edited(tmp_path, CONFIGS / "torchtune_seed004_evalsuite.yaml", base_model=str(tmp_path))
    spec = tm.model_spec(config, QWEN2_JSON)
    assert spec.builder == "torchtune.models.qwen2._component_builders.lora_qwen2" and spec.model_type == "QWEN2"
    assert spec.dims == {"vocab_size": 448, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "embed_dim": 128,
                         "intermediate_dim": 384, "max_seq_len": 256, "norm_eps": 1e-6, "rope_base": 10000.0,
                         "tie_word_embeddings": True}
    llama = {**QWEN2_JSON, "model_type": "llama", "tie_word_embeddings": False, "rope_parameters": {},
             "rope_theta": 500000.0}
    spec = tm.model_spec(config, llama)
    assert spec.builder.endswith("llama3._component_builders.lora_llama3") and spec.dims["rope_base"] == 500000.0
    assert "tie_word_embeddings" not in spec.dims and spec.model_type == "LLAMA3"
    tied = tm.model_spec(config, {**llama, "tie_word_embeddings": True})  # e.g. the embedded tiny base
    assert tied.builder.endswith("llama3_2._component_builders.lora_llama3_2") and tied.model_type == "LLAMA3_2"
    assert tied.dims["tie_word_embeddings"] is True and tied.dims["scale_factor"] == 1  # scale 1 = plain RoPE
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}
    scaled: dict[str, Any] = {**llama, "rope_parameters": rope}
    assert tm.model_spec(config, scaled).dims["scale_factor"] == 8.0
    scaled["rope_parameters"]["high_freq_factor"] = 2.0
    with pytest.raises(EvalsuiteError, match="torchtune supports"):
        tm.model_spec(config, scaled)
    with pytest.raises(EvalsuiteError, match="rope_type 'yarn'"):
        tm.model_spec(config, {**llama, "rope_parameters": {"rope_type": "yarn"}})
    with pytest.raises(EvalsuiteError, match=r"attention_bias set in config\.json"):  # a Qwen2 converted to Llama
        tm.model_spec(config, {**llama, "attention_bias": True})
    with pytest.raises(EvalsuiteError, match="model_type 'mistral'"):
        tm.model_spec(config, {**QWEN2_JSON, "model_type": "mistral"})


def test_steps_plan_matches_torchtune_epoch_semantics(tmp_path: Path) -> None:
    config = edited(tmp_path, CONFIGS / "torchtune_seed004_evalsuite.yaml", max_steps=5)
    assert tm.steps_plan(config, rows=1000) == (1, 5, 5)  # 62 steps per epoch: exact
    assert tm.steps_plan(config, rows=50) == (2, None, 6)  # 3 steps per epoch: whole epochs, recorded
    assert tm.steps_plan(config, rows=1000, world_size=2)[2] == 5
    config = replace(config, max_steps=None)
    assert tm.steps_plan(config, rows=1000) == (1, None, 62)
    with pytest.raises(EvalsuiteError, match="fewer than one optimizer step"):
        tm.steps_plan(config, rows=15)
    config = replace(config, num_epochs=1.5)
    with pytest.raises(EvalsuiteError, match=r"num_epochs: torchtune trains whole epochs"):
        tm.steps_plan(config, rows=1000)


@pytest.mark.parametrize(("changes", "key", "message"), [
    ({"fp16": True, "bf16": False}, "fp16", "bf16 or fp32, not fp16"),
    ({"load_in_8bit": True}, "load_in_8bit", "no 8-bit base loading"),
    ({"adapter": "qlora", "bnb_4bit_quant_type": "fp4"}, "bnb_4bit_quant_type", "nf4 only"),
    ({"lora_target_modules": ["q_proj", "gate_proj"]}, "lora_target_modules", "together"),
    ({"lora_target_modules": ["q_proj", "wq"]}, "lora_target_modules", "wq: torchtune adapts only"),
    ({"lora_modules_to_save": ["embed_tokens"]}, "lora_modules_to_save", "not supported"),
    ({"optimizer": "adafactor"}, "optimizer", "adafactor: the torchtune backend maps"),
    ({"lr_scheduler": "polynomial"}, "lr_scheduler", "polynomial: the torchtune backend maps"),
    ({"base_model": "someone/unknown-model"}, "base_model", "not a torchtune model this backend knows"),
])
def test_settings_torchtune_cannot_honour_name_the_file_line_and_key(tmp_path: Path, changes: dict[str, Any],
                                                                     key: str, message: str) -> None:
    config = edited(tmp_path, CONFIGS / "torchtune_seed004_evalsuite.yaml", **changes)
    with pytest.raises(EvalsuiteError) as err:
        spec = tm.model_spec(config, None)
        tm.recipe_config(config, spec, PATHS, rows=1000, pad_id=0, device="cuda", bf16=True)
    text = str(err.value)
    assert text.startswith(f"{config.path}:") and f": {key}: " in text and message in text
    line = config.line_of(key)
    if line:
        assert text.startswith(f"{config.path}:{line}: ")


# --- axolotl -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["phi3_squad_qlora.yaml", "gemma2_qlora.yaml"])
def test_axolotl_gets_the_same_yaml_with_only_the_documented_changes(name: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the seed configs' dataset paths are relative to the repo, as in axolotl
    config = quiet_load(CONFIGS / name)
    original = yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))
    derived = ax.axolotl_config(config, tmp_path / "run", resume_from=None, cuda=True)
    changed = {"output_dir", "datasets", *ax.EXPLICIT_DEFAULTS}
    for key, value in original.items():
        if key not in changed:
            assert derived[key] == value, key
    assert derived["output_dir"] == str((tmp_path / "run").resolve())
    for before, after in zip(original["datasets"], derived["datasets"]):
        assert Path(after["path"]) == (ROOT / before["path"]).resolve()
        assert {k: v for k, v in after.items() if k != "path"} == {k: v for k, v in before.items() if k != "path"}
    for key in ax.EXPLICIT_DEFAULTS:  # set values are kept; missing ones get evalsuite's default
        assert derived[key] == (original[key] if key in original else getattr(config, key)), key
    assert derived["bf16"] == original["bf16"] == "auto"  # on a GPU axolotl resolves auto itself
    assert not any(k in derived for k in ax.CPU_OFF_KERNELS)  # cuda=True: axolotl's kernels stay its choice


def test_axolotl_config_fills_defaults_drops_evalsuite_keys_and_fixes_cpu_runs(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("base_model: x\nbackend: axolotl\ngates: [\"uppercase.accuracy>=0.8\"]\n"
                   "sequence_length: 64\nlora_mlp_kernel: true\n"
                   "datasets:\n  - path: d.jsonl\n    type: chat_template\n")
    (tmp_path / "d.jsonl").write_text("{}\n")
    config = replace(quiet_load(cfg), max_steps=3)  # as `--max-steps 3` does
    ckpt = tmp_path / "run" / "checkpoint-2"
    derived = ax.axolotl_config(config, tmp_path / "run", resume_from=ckpt, cuda=False)
    assert "backend" not in derived and "gates" not in derived
    assert derived["adapter"] == "lora" and derived["lora_r"] == 8 and derived["seed"] == 42
    assert "sequence_len" not in derived and derived["sequence_length"] == 64  # the alias counts as set
    assert derived["max_steps"] == 3 and derived["resume_from_checkpoint"] == str(ckpt.resolve())
    assert derived["datasets"][0]["path"] == str((tmp_path / "d.jsonl").resolve())  # found beside the config
    assert derived["lora_mlp_kernel"] is True  # the user's own choice stands
    assert derived["lora_qkv_kernel"] is False and derived["lora_o_kernel"] is False
    assert (derived["bf16"], derived["fp16"]) == (False, False)  # resolved for a CPU


def test_axolotl_refuses_masked_reasoning_it_would_train(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("base_model: x\ntrain_on_reasoning: false\ndatasets:\n  - path: d.jsonl\n    type: chat_template\n")
    (tmp_path / "d.jsonl").write_text("{}\n")
    with pytest.raises(EvalsuiteError, match=r"c\.yaml:2: train_on_reasoning: false is evalsuite's own"):
        ax.axolotl_config(quiet_load(cfg), tmp_path / "run", resume_from=None, cuda=False)
    cfg.write_text(cfg.read_text().replace("false", "true"))
    assert "train_on_reasoning" not in ax.axolotl_config(quiet_load(cfg), tmp_path / "run", resume_from=None,
                                                         cuda=False)


# --- registry and `evalsuite backends` ---------------------------------------------------------------------------

def test_registry_has_the_three_backends_and_each_implements_the_protocol() -> None:
    assert {"trl", "axolotl", "torchtune"} <= set(BUILTIN)
    for name in ("trl", "axolotl", "torchtune"):
        assert get_backend(name).name == name


def test_backends_lists_availability_and_how_to_install(tmp_path: Path) -> None:
    env = {**os.environ, ax.PYTHON_ENV: str(tmp_path / "no-python"), "EVALSUITE_TORCHTUNE_PYTHON": str(tmp_path / "no")}
    done = run_cli("backends", cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "available" in rows["trl"].split()[1]
    assert rows["axolotl"].split()[1] == "missing" and "pip install axolotl" in rows["axolotl"]
    assert rows["torchtune"].split()[1] == "missing" and "pip install torchtune" in rows["torchtune"]


def test_training_with_a_missing_backend_is_one_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("base_model: x\ndatasets:\n  - path: d.jsonl\n    type: chat_template\n")
    env = {**os.environ, ax.PYTHON_ENV: str(tmp_path / "no-python")}
    done = run_cli("train", cfg, "--backend", "axolotl", "--output-dir", tmp_path / "run", cwd=ROOT, env=env,
                   timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "the axolotl backend is not available" in done.stderr and "pip install axolotl" in done.stderr
    assert not (tmp_path / "run").exists()


def test_torchtune_refuses_resume_before_touching_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.trainers import torchtune_backend as tt

    monkeypatch.setattr(tt.TorchtuneBackend, "available", lambda self: (True, "torchtune test"))
    config = quiet_load(CONFIGS / "torchtune_seed004_evalsuite.yaml")
    with pytest.raises(EvalsuiteError, match="--resume is not supported by the torchtune backend"):
        tt.TorchtuneBackend().train(config, tmp_path / "run", TrainOptions(resume=True))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["axolotl", "torchtune"])
def test_multi_process_external_backends_need_gpus(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    backend = get_backend(name)
    monkeypatch.setattr(type(backend), "available", lambda self: (True, f"{name} test"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = quiet_load(CONFIGS / "torchtune_seed004_evalsuite.yaml")
    with pytest.raises(EvalsuiteError, match=r"needs .*CUDA GPU.*use the trl backend"):
        backend.train(config, tmp_path / "run", TrainOptions(num_processes=2))
    assert not (tmp_path / "run").exists()
