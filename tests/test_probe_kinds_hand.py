"""Column kinds on folders built by hand (no model loaded): a trainer output folder whose newest complete checkpoint
is a full fine-tune (config.json + weights, no adapter) is a merged model, one with a PEFT adapter is a checkpoint."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from evalsuite.errors import EvalsuiteError
from evalsuite.probe.kinds import locate


def _safetensors(path: Path, name: str) -> None:
    """A valid one-tensor safetensors file: 8-byte header length, JSON header, 4 bytes of float32 data."""
    header = json.dumps({name: {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + struct.pack("<f", 1.0))


def _checkpoint(root: Path, step: int, full: bool, finished: bool = True) -> Path:
    ckpt = root / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    if full:  # what Trainer saves for a full fine-tune: the whole model
        (ckpt / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
        _safetensors(ckpt / "model.safetensors", "lm_head.weight")
    else:
        (ckpt / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "some/base", "r": 8}))
        _safetensors(ckpt / "adapter_model.safetensors", "base_model.model.lm_head.lora_A.weight")
    if finished:
        (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return ckpt


def test_a_full_fine_tune_checkpoint_is_a_merged_model(tmp_path: Path) -> None:
    out = tmp_path / "full-ft"
    done = _checkpoint(out, 50, full=True)
    _checkpoint(out, 100, full=True, finished=False)  # killed while saving
    src = locate(out, allow_pickle=False)
    assert (src.kind, src.path, src.checkpoint, src.is_adapter) == ("merged", done, "checkpoint-50", False)
    assert src.skipped == ("checkpoint-100 (no trainer_state.json: stopped while saving)",)


def test_an_adapter_checkpoint_is_a_checkpoint_column(tmp_path: Path) -> None:
    out = tmp_path / "lora-out"
    done = _checkpoint(out, 20, full=False)
    src = locate(out, allow_pickle=False)
    assert (src.kind, src.path, src.checkpoint, src.is_adapter) == ("checkpoint", done, "checkpoint-20", True)
    assert src.declared_base()[0] == "some/base"


def test_a_checkpoint_with_neither_weights_nor_config_is_skipped(tmp_path: Path) -> None:
    out = tmp_path / "empty-out"
    (out / "checkpoint-5").mkdir(parents=True)
    (out / "checkpoint-5" / "trainer_state.json").write_text("{}")
    with pytest.raises(EvalsuiteError, match=r"no complete checkpoint: checkpoint-5 \(no weights\)"):
        locate(out, allow_pickle=False)
