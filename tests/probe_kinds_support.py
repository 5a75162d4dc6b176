"""What users have instead of an evalsuite run dir, made from the demo run dir by the libraries themselves.

- ``peft_folder``: the demo adapter loaded and saved again by peft (``save_pretrained``): adapter_config.json +
  adapter_model.safetensors (+ peft's README), no manifest, no tokenizer, no template;
- ``trainer_output``: a trainer output folder holding only ``checkpoint-N/`` as transformers' Trainer leaves it
  for a PEFT model (peft's files, ``trainer_state.json``, pickled ``training_args.bin``/``optimizer.pt``), plus a
  newer checkpoint killed mid-save (no ``trainer_state.json``);
- ``merged_model``: ``merge_and_unload()`` + ``save_pretrained`` with the run's tokenizer and template beside it;
- ``narrow_base`` / ``narrow_adapter``: a second tiny base of another width (the tiny base's config at half the
  width, random weights, the same tokenizer) and a peft adapter on it (random, non-zero LoRA weights);
- ``hub_cache``: a local Hugging Face cache (the layout ``hf download`` writes) holding the PEFT folder as
  ``local/tiny-adapter`` and the tiny base as ``local/tiny-base``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_engine import MINI as BASE_MINI

MINI = BASE_MINI + "  - prompt: Mixed Case text\n"
ADAPTER_ID = "local/tiny-adapter"
BASE_ID = "local/tiny-base"


def _peft_model(base: Path, adapter: Path) -> Any:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype="float32")
    return PeftModel.from_pretrained(model, str(adapter))


@pytest.fixture(scope="session")
def kinds_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per session: each test module that imports these fixtures gets its own fixture instances, so
    every maker below builds once into it and later calls find the result there."""
    root = tmp_path_factory.getbasetemp() / "kinds"
    root.mkdir(exist_ok=True)
    return root


def _once(out: Path, make: Callable[[Path], None]) -> Path:
    """``make(tmp)`` then rename to ``out``, unless ``out`` was already made (complete: the rename is last)."""
    if not out.exists():
        work = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(work, ignore_errors=True)
        make(work)
        os.replace(work, out)
    return out


@pytest.fixture(scope="session")
def peft_folder(demo_adapter: Path, tiny_base: Path, kinds_root: Path) -> Path:
    out = _once(kinds_root / "peft-plain", lambda work: _peft_model(tiny_base, demo_adapter).save_pretrained(str(work)))
    assert not (out / "evalsuite_manifest.json").exists() and not (out / "tokenizer.json").exists()
    return out


def _make_trainer_output(peft_folder: Path, out: Path) -> None:
    done, killed = out / "checkpoint-60", out / "checkpoint-120"
    for ckpt in (done, killed):
        shutil.copytree(peft_folder, ckpt)
        (ckpt / "optimizer.pt").write_bytes(b"\x80\x04pickle")  # the Trainer's pickles beside the adapter
        (ckpt / "training_args.bin").write_bytes(b"\x80\x04pickle")
    (done / "trainer_state.json").write_text(json.dumps({"global_step": 60, "log_history": []}), encoding="utf-8")


@pytest.fixture(scope="session")
def trainer_output(peft_folder: Path, kinds_root: Path) -> Path:
    return _once(kinds_root / "trainer-out", lambda work: _make_trainer_output(peft_folder, work))


def _make_merged(demo_adapter: Path, tiny_base: Path, out: Path) -> None:
    _peft_model(tiny_base, demo_adapter).merge_and_unload().save_pretrained(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(demo_adapter / name, out / name)


@pytest.fixture(scope="session")
def merged_model(demo_adapter: Path, tiny_base: Path, kinds_root: Path) -> Path:
    return _once(kinds_root / "merged", lambda work: _make_merged(demo_adapter, tiny_base, work))


def _make_narrow_base(tiny_base: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(tiny_base))
    config.hidden_size, config.intermediate_size = config.hidden_size // 2, config.intermediate_size // 2
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(tiny_base / name, out / name)


@pytest.fixture(scope="session")
def narrow_base(tiny_base: Path, kinds_root: Path) -> Path:
    """A second base, half as wide as the tiny one, with its tokenizer and template (random weights: its answers do
    not matter, its shapes do)."""
    return _once(kinds_root / "narrow-base", lambda work: _make_narrow_base(tiny_base, work))


def _make_narrow_adapter(narrow_base: Path, out: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(narrow_base), dtype="float32")
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(str(out))


@pytest.fixture(scope="session")
def narrow_adapter(narrow_base: Path, kinds_root: Path) -> Path:
    return _once(kinds_root / "narrow-adapter", lambda work: _make_narrow_adapter(narrow_base, work))


def _snapshot(cache: Path, repo_id: str, source: Path, commit: str) -> Path:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    shutil.copytree(source, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return snap


def _make_hub_cache(peft_folder: Path, tiny_base: Path, cache: Path) -> None:
    _snapshot(cache, BASE_ID, tiny_base, "b" * 40)
    snap = _snapshot(cache, ADAPTER_ID, peft_folder, "a" * 40)
    config = json.loads((snap / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = BASE_ID  # as adapters on the hub name their base
    (snap / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.fixture(scope="session")
def hub_cache(peft_folder: Path, tiny_base: Path, kinds_root: Path) -> Path:
    return _once(kinds_root / "hf-hub", lambda work: _make_hub_cache(peft_folder, tiny_base, work))


@pytest.fixture
def offline_hub(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield hub_cache


def battery(folder: Path) -> Path:
    path = folder / "mini.yaml"
    path.write_text(MINI, encoding="utf-8")
    return path


def outputs_by_column(results: dict[str, Any]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for s in results["samples"]:
        out.setdefault(s["adapter"], {})[s["case"]] = s["output"]
    return out
