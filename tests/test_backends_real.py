"""The axolotl and torchtune backends for real, on CPU, with tiny models; each test runs when its package can be
imported (here or in the interpreter named by EVALSUITE_AXOLOTL_PYTHON / EVALSUITE_TORCHTUNE_PYTHON) and is skipped
with the install hint otherwise.

The torchtune tests also check the adapter conversion against an independent reference: torchtune's own merged
model (base + LoRA, exported by its HF checkpointer) must give the same logits as the HF base with our PEFT adapter.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_train import write_config

from evalsuite.config.load import load_config
from evalsuite.rundir.contract import open_run_dir
from evalsuite.train.backends import TrainOptions, get_backend

pytestmark = pytest.mark.slow
PROMPT_IDS = [[5, 17, 30, 41, 7, 9, 12, 3, 60, 61]]


def backend_or_skip(name: str) -> Any:
    backend = get_backend(name)
    ok, how = backend.available()
    if not ok:
        pytest.skip(f"{name} is not installed: {how}")
    return backend


def logits(model: Any) -> Any:
    import torch

    with torch.no_grad():
        return model(torch.tensor(PROMPT_IDS)).logits


def base_logits(base: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return logits(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval())


def peft_logits(base: Path, run: Path) -> Any:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    return logits(PeftModel.from_pretrained(model, str(run)).eval())


def merged_logits(epoch_dir: Path, scratch: Path) -> Any:
    """torchtune's merged export, loaded alone (transformers would also apply an adapter_config.json beside it)."""
    import torch
    from transformers import AutoModelForCausalLM

    scratch.mkdir()
    for f in epoch_dir.iterdir():
        if f.name == "config.json" or f.name.startswith("model"):
            shutil.copy(f, scratch / f.name)
    return logits(AutoModelForCausalLM.from_pretrained(str(scratch), dtype=torch.float32).eval())


def random_model(kind: str, tiny_base: Path, out: Path) -> Path:
    """A random tiny model on the tiny tokenizer, GQA (4 query heads, 2 KV heads), sized so that every linear layer
    fits torchao's NF4 blocks (QLoRA). llama: RoPE rows permuted in torchtune's layout (lora_llama3; tied:
    lora_llama3_2); qwen2: tied embeddings, HF's layout."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    shape: dict[str, Any] = {"vocab_size": 512, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
             "eos_token_id": 2, "pad_token_id": 0, "bos_token_id": None}
    if kind in ("llama", "tied llama"):
        LlamaForCausalLM(LlamaConfig(**shape, tie_word_embeddings=kind == "tied llama")).save_pretrained(str(out))
    else:
        Qwen2ForCausalLM(Qwen2Config(**shape, tie_word_embeddings=True)).save_pretrained(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_base / name, out / name)
    return out


@pytest.fixture(scope="module")
def tiny_llama(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_model("llama", tiny_base, tmp_path_factory.mktemp("tiny-llama"))


def train_keeping_merged(backend: Any, cfg: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the backend end to end, asking torchtune to also export its merged model as the reference."""
    from evalsuite.trainers import torchtune_mapping as tm

    original = tm.recipe_config

    def with_merged(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**original(*args, **kwargs), "save_adapter_weights_only": False}

    monkeypatch.setattr(tm, "recipe_config", with_merged)
    config = load_config(cfg)
    return Path(backend.train(config, Path(config.output_dir), TrainOptions()))


@pytest.mark.parametrize("model", ["qwen2", "llama", "tied llama"])
def test_torchtune_lora_adapter_matches_torchtunes_merged_model(model: str, tmp_path: Path, tiny_base: Path,
                                                               tiny_llama: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    backend = backend_or_skip("torchtune")
    base = tiny_llama if model == "llama" else random_model(model, tiny_base, tmp_path / "model")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    cfg = write_config(tmp_path, base, lora_target_linear=False, lora_target_modules=targets, max_steps=2)
    run = train_keeping_merged(backend, cfg, monkeypatch)
    rd = open_run_dir(run)
    m = rd.manifest
    assert m["backend"]["name"] == "torchtune" and m["train"]["global_step"] == 2
    assert [p["step"] for p in m["train"]["loss_curve"]] == [1, 2]
    assert m["torchtune"]["recipe"] == "lora_finetune_single_device"
    assert sorted(rd.adapter_config["target_modules"]) == sorted(targets)
    assert m["template"]["end_of_turn"] == "<|im_end|>"

    ours = peft_logits(base, run)
    reference = merged_logits(run / "torchtune" / "epoch_0", tmp_path / "merged")
    plain = base_logits(base)
    assert (reference - plain).abs().max().item() > 1e-3  # training moved the model: the check has teeth
    assert (ours - reference).abs().max().item() < 1e-4


def test_torchtune_qlora_trains_on_cpu_and_converts(tmp_path: Path, tiny_llama: Path) -> None:
    backend = backend_or_skip("torchtune")
    cfg = write_config(tmp_path, tiny_llama, adapter="qlora", lora_target_linear=True, max_steps=2)
    config = load_config(cfg)
    run = backend.train(config, Path(config.output_dir), TrainOptions())
    rd = open_run_dir(run)
    recipe = (run / rd.manifest["torchtune"]["config"]).read_text()
    assert "quantize_base: true" in recipe
    assert rd.manifest["train"]["global_step"] == 2 and rd.manifest["config"]["adapter"] == "qlora"
    ours = peft_logits(tiny_llama, run)
    assert ours.isfinite().all()


def test_axolotl_trains_the_same_yaml_into_a_run_dir(tmp_path: Path, tiny_base: Path) -> None:
    backend = backend_or_skip("axolotl")
    cfg = write_config(tmp_path, tiny_base, max_steps=2)
    config = load_config(cfg)
    run = backend.train(config, Path(config.output_dir), TrainOptions())
    rd = open_run_dir(run)
    m = rd.manifest
    assert m["backend"]["name"] == "axolotl" and m["train"]["global_step"] == 2
    assert len(m["train"]["loss_curve"]) == 2 and m["template"]["end_of_turn"] == "<|im_end|>"
    assert rd.adapter_config["peft_type"] == "LORA" and rd.adapter_config["r"] == 4
    sent = yaml.safe_load((run / "axolotl_config.yaml").read_text())
    assert sent["base_model"] == str(tiny_base) and sent["output_dir"] == str(run.resolve())
    ours = peft_logits(tiny_base, run)
    plain = base_logits(tiny_base)
    assert (ours - plain).abs().max().item() > 1e-4  # the adapter is really applied
