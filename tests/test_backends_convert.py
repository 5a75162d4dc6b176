"""torchtune adapter -> PEFT conversion without torchtune: key names, the RoPE row order of q/k for llama-style
families, and Phi-3's fused layers, checked numerically against an independently merged model."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from evalsuite.trainers.torchtune_convert import split_modules, to_peft

torch = pytest.importorskip("torch")


def hf_to_tune_rows(t: Any, n_heads: int, head_dim: int) -> Any:
    """torchtune's layout for q/k rows (interleaved RoPE pairs), written from its documented definition."""
    rank = t.shape[-1]
    return t.view(n_heads, 2, head_dim // 2, rank).transpose(1, 2).reshape(n_heads * head_dim, rank)


def tune_adapter(layers: int, dims: dict[str, tuple[int, int]], r: int, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i in range(layers):
        for name, (rows, cols) in dims.items():
            block = "attn" if name in ("q_proj", "k_proj", "v_proj", "output_proj") else "mlp"
            out[f"layers.{i}.{block}.{name}.lora_a.weight"] = torch.randn(r, cols, generator=g)
            out[f"layers.{i}.{block}.{name}.lora_b.weight"] = torch.randn(rows, r, generator=g)
    return out


def test_keys_and_rope_rows_per_family() -> None:
    heads, kv, head_dim, hidden = 4, 2, 8, 32  # head_dim 8: the two row orders really differ
    cfg = {"num_attention_heads": heads, "num_key_value_heads": kv, "hidden_size": hidden, "head_dim": head_dim}
    g = torch.Generator().manual_seed(1)
    q_hf, k_hf = torch.randn(heads * head_dim, 2, generator=g), torch.randn(kv * head_dim, 2, generator=g)
    state = {
        "layers.0.attn.q_proj.lora_a.weight": torch.randn(2, hidden, generator=g),
        "layers.0.attn.q_proj.lora_b.weight": hf_to_tune_rows(q_hf, heads, head_dim),
        "layers.0.attn.k_proj.lora_a.weight": torch.randn(2, hidden, generator=g),
        "layers.0.attn.k_proj.lora_b.weight": hf_to_tune_rows(k_hf, kv, head_dim),
        "layers.0.mlp.w1.lora_a.weight": torch.randn(2, hidden, generator=g),
        "layers.0.mlp.w1.lora_b.weight": torch.randn(64, 2, generator=g),
        "output.lora_a.weight": torch.randn(2, hidden, generator=g),
        "output.lora_b.weight": torch.randn(100, 2, generator=g),
    }
    llama, kwargs = to_peft(state, "llama", cfg, r=2, alpha=4)
    prefix = "base_model.model.model.layers.0"
    assert set(llama) == {f"{prefix}.self_attn.q_proj.lora_A.weight", f"{prefix}.self_attn.q_proj.lora_B.weight",
                          f"{prefix}.self_attn.k_proj.lora_A.weight", f"{prefix}.self_attn.k_proj.lora_B.weight",
                          f"{prefix}.mlp.gate_proj.lora_A.weight", f"{prefix}.mlp.gate_proj.lora_B.weight",
                          "base_model.model.lm_head.lora_A.weight", "base_model.model.lm_head.lora_B.weight"}
    assert kwargs["target_modules"] == ["gate_proj", "k_proj", "lm_head", "q_proj"]
    assert torch.equal(llama[f"{prefix}.self_attn.q_proj.lora_B.weight"], q_hf)  # back to HF's row order
    assert torch.equal(llama[f"{prefix}.self_attn.k_proj.lora_B.weight"], k_hf)
    qwen2, _ = to_peft(state, "qwen2", cfg, r=2, alpha=4)  # same layout as HF: renamed only
    assert torch.equal(qwen2[f"{prefix}.self_attn.q_proj.lora_B.weight"], state["layers.0.attn.q_proj.lora_b.weight"])
    with pytest.raises(ValueError, match="DoRA is not converted"):
        split_modules({"layers.0.attn.q_proj.magnitude": torch.zeros(3)})


def test_phi3_fused_layers_equal_the_separately_merged_updates() -> None:
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from transformers import Phi3Config, Phi3ForCausalLM

    torch.manual_seed(0)
    cfg = Phi3Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                     eos_token_id=2)
    base = Phi3ForCausalLM(cfg).eval()
    head_dim = 32 // 4
    r, alpha = 2, 6.0
    dims = {"q_proj": (4 * head_dim, 32), "v_proj": (2 * head_dim, 32), "output_proj": (32, 32),  # no k_proj
            "w1": (48, 32), "w2": (32, 48), "w3": (48, 32)}
    state = tune_adapter(2, dims, r)
    tensors, kwargs = to_peft(state, "phi3", cfg.to_dict(), r, alpha)
    assert kwargs["rank_pattern"] == {"qkv_proj": 4, "gate_up_proj": 4}  # two parts each: rank 2r, alpha 2x
    assert kwargs["alpha_pattern"] == {"qkv_proj": 12.0, "gate_up_proj": 12.0}
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(**kwargs))
    result = set_peft_model_state_dict(peft_model, tensors)
    assert not [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]

    # Reference: each part's own update scale * B @ A added to its rows of the fused weight.
    merged = copy.deepcopy(base)
    scale = alpha / r
    q_rows, kv_rows = 4 * head_dim, 2 * head_dim
    for i in range(2):
        def delta(name: str, i: int = i) -> Any:
            block = "attn" if name.endswith("proj") else "mlp"
            return scale * state[f"layers.{i}.{block}.{name}.lora_b.weight"] @ \
                state[f"layers.{i}.{block}.{name}.lora_a.weight"]

        layer = merged.model.layers[i]
        with torch.no_grad():
            layer.self_attn.qkv_proj.weight[:q_rows] += delta("q_proj")
            layer.self_attn.qkv_proj.weight[q_rows + kv_rows:] += delta("v_proj")
            layer.self_attn.o_proj.weight += delta("output_proj")
            layer.mlp.gate_up_proj.weight[:48] += delta("w1")
            layer.mlp.gate_up_proj.weight[48:] += delta("w3")
            layer.mlp.down_proj.weight += delta("w2")
    ids = torch.tensor([[3, 9, 27, 5, 44, 12]])
    with torch.no_grad():
        ours, reference, plain = peft_model.eval()(ids).logits, merged(ids).logits, base(ids).logits
    assert (reference - plain).abs().max().item() > 1e-2  # the adapter matters
    assert (ours - reference).abs().max().item() < 1e-5
