"""What the TRL backend really trained with, read off the trainer and the model during a real run (never the
manifest's echo of the config): the optimizer class and its 8-bit state, 4-bit NF4 and 8-bit layer types,
gradient checkpointing recomputing every decoder layer in the backward pass, and packing whose batches restart
positions per sample with no attention across samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_train import write_config

from evalsuite.config.load import load_config
from evalsuite.train.backends import TrainOptions, get_backend

pytestmark = pytest.mark.slow
STEPS = 2  # write_config's max_steps


@dataclass
class Ran:
    run: Path
    trainer: Any
    layers: int = 0  # decoder layers in the model
    layer_calls: int = 0  # decoder-layer MLP calls while training (backward recomputations included)
    batches: list[dict[str, Any]] = field(default_factory=list)  # what the model was fed

    @property
    def optimizer(self) -> Any:
        return getattr(self.trainer.optimizer, "optimizer", self.trainer.optimizer)  # accelerate's wrapper

    def modules(self, cls: type) -> list[Any]:
        return [m for m in self.trainer.model.modules() if isinstance(m, cls)]


def train_watching(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> Ran:
    """Train through the backend's own ``train`` while hooks record the trainer, the layer calls and the batches."""
    from evalsuite.trainers import trl_backend

    real = trl_backend._build_trainer
    ran: dict[str, Ran] = {}

    def build(*args: Any, **kwargs: Any) -> Any:
        trainer = real(*args, **kwargs)
        watch = ran["ran"] = Ran(Path(), trainer)
        layers = [m for m in trainer.model.modules() if type(m).__name__.endswith("DecoderLayer")]
        watch.layers = len(layers)

        def counting(forward: Any) -> Any:
            def counted(*args: Any, **kwargs: Any) -> Any:
                watch.layer_calls += 1
                return forward(*args, **kwargs)

            return counted

        for layer in layers:  # counted at a forward inside the layer: the backward's recomputation skips hooks
            layer.mlp.forward = counting(layer.mlp.forward)
        trainer.model.register_forward_pre_hook(
            lambda _m, _a, kwargs: watch.batches.append({k: v for k, v in kwargs.items() if v is not None}),
            with_kwargs=True)
        return trainer

    monkeypatch.setattr(trl_backend, "_build_trainer", build)
    config = load_config(cfg)
    out = get_backend("trl").train(config, Path(config.output_dir), TrainOptions())
    watch = ran["ran"]
    watch.run = out
    return watch


def test_qlora_trains_nf4_double_quant_layers_with_a_paged_8bit_optimizer_and_checkpointing(
        tmp_path: Path, tiny_base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bitsandbytes as bnb
    import torch

    ran = train_watching(write_config(tmp_path, tiny_base, adapter="qlora", load_in_4bit=True,
                                      bnb_4bit_compute_dtype="float32", bnb_4bit_use_double_quant=True,
                                      optimizer="paged_adamw_8bit", gradient_checkpointing=True), monkeypatch)
    layers = ran.modules(bnb.nn.Linear4bit)
    assert layers and all(m.weight.quant_state.quant_type == "nf4" for m in layers)
    assert all(m.weight.quant_state.nested for m in layers)  # double quantisation
    assert all(m.weight.dtype == torch.uint8 and m.compute_dtype == torch.float32 for m in layers)
    wrapped = [m.base_layer for m in ran.trainer.model.modules() if hasattr(m, "base_layer")]
    assert wrapped and all(isinstance(w, bnb.nn.Linear4bit) for w in wrapped)  # every LoRA'd projection is 4-bit
    opt = ran.optimizer
    assert type(opt).__module__.startswith("bitsandbytes.optim") and opt.args.optim_bits == 8 and opt.is_paged
    # checkpointing: each decoder layer runs once forward and once more in the backward pass, every step
    assert ran.layer_calls == 2 * STEPS * ran.layers


def test_8bit_loading_trains_int8_layers_with_an_8bit_optimizer_state(tmp_path: Path, tiny_base: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import bitsandbytes as bnb
    import torch

    # rank 32: LoRA matrices of 32 x 128 = 4096 values, bitsandbytes' threshold for keeping the state in 8 bits
    ran = train_watching(write_config(tmp_path, tiny_base, load_in_8bit=True, optimizer="adamw_bnb_8bit",
                                      lora_r=32, lora_alpha=32), monkeypatch)
    layers = ran.modules(bnb.nn.Linear8bitLt)
    assert layers and all(m.weight.dtype == torch.int8 for m in layers)
    opt = ran.optimizer
    assert type(opt).__module__.startswith("bitsandbytes.optim") and opt.args.optim_bits == 8 and not opt.is_paged
    states = [s for s in opt.state.values() if "state1" in s]
    assert states and any(s["state1"].dtype == torch.uint8 for s in states)
    assert ran.layer_calls == STEPS * ran.layers  # no checkpointing unless asked


def test_plain_lora_runs_torch_adamw_and_checkpointing_when_asked(tmp_path: Path, tiny_base: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    ran = train_watching(write_config(tmp_path, tiny_base, optimizer="adamw_torch", gradient_checkpointing=True),
                         monkeypatch)
    assert type(ran.optimizer) is torch.optim.AdamW
    assert ran.layer_calls == 2 * STEPS * ran.layers


def test_packing_feeds_per_sample_positions_and_no_attention_across_samples(tmp_path: Path, tiny_base: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The batches the model was really fed pack several samples per row with positions restarting at each; the
    trained model gives every packed sample the logits it gives that sample alone, so nothing attends across."""
    import torch

    ran = train_watching(write_config(tmp_path, tiny_base, sample_packing=True, micro_batch_size=2), monkeypatch)
    assert len(ran.batches) == STEPS
    batch = ran.batches[0]
    assert "position_ids" in batch and "attention_mask" not in batch
    ids, pos = batch["input_ids"][0], batch["position_ids"][0]
    starts = (pos == 0).nonzero().flatten().tolist()
    assert len(starts) >= 3, "several samples packed into one row"
    spans = list(zip(starts, [*starts[1:], len(pos)]))
    for a, b in spans:
        assert pos[a:b].tolist() == list(range(b - a))
    model = ran.trainer.model.eval()
    with torch.no_grad():
        packed = model(input_ids=ids[None], position_ids=pos[None]).logits[0]
        for a, b in spans:
            alone = model(input_ids=ids[None, a:b]).logits[0]
            assert torch.allclose(packed[a:b], alone, atol=1e-4), f"sample at {a}:{b} sees another sample"
    # and the same check has teeth: one causal mask over the whole row lets later samples see earlier ones
    with torch.no_grad():
        a, b = spans[1]
        mixed = model(input_ids=ids[None], attention_mask=torch.ones_like(ids)[None],
                      position_ids=torch.arange(len(ids))[None]).logits[0]
        assert not torch.allclose(mixed[a:b], model(input_ids=ids[None, a:b]).logits[0], atol=1e-4)
