"""torchtune LoRA adapter (its own key names and layout) -> a PEFT adapter (``adapter_model.safetensors`` +
``adapter_config.json``) that peft loads on the HF base model.

Why our own converter rather than the PEFT files torchtune's HF checkpointer writes: torchtune 0.6.1 permutes the
q/k ``lora_B`` rows for every model type (the llama RoPE layout), but its Qwen2 checkpoints are not permuted, so its
PEFT export of a Qwen2 adapter on q_proj/k_proj does not match the base; and it writes no PEFT files for Phi-3, whose
HF model fuses q/k/v and gate/up. We read torchtune's own ``adapter_model.pt`` and convert per family:

- llama, gemma2: torchtune stores q/k rows interleaved for RoPE; HF stores halves. ``lora_B`` (output side) of q/k
  is permuted back per head; ``lora_A`` (input side) is unchanged.
- qwen2: same layout as HF; keys are renamed only.
- phi3: HF's ``qkv_proj`` = [q; k; v] and ``gate_up_proj`` = [gate; up]. Separate LoRAs on the parts are exactly one
  LoRA of rank n*r on the fused layer: A stacked, B block-diagonal; alpha scaled by n keeps alpha/r (``rank_pattern``
  and ``alpha_pattern`` in adapter_config).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

TUNE_KEY = re.compile(r"^(?:layers\.(\d+)\.(attn|mlp)\.(\w+)|(output))\.lora_([ab])\.weight$")
HF_ATTN = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "output_proj": "o_proj"}
HF_MLP = {"w1": "gate_proj", "w2": "down_proj", "w3": "up_proj"}
PERMUTED_FAMILIES = frozenset({"llama", "gemma2"})


def head_dims(hf_config: dict[str, Any]) -> tuple[int, int, int]:
    heads = int(hf_config["num_attention_heads"])
    kv = int(hf_config.get("num_key_value_heads") or heads)
    head_dim = int(hf_config.get("head_dim") or hf_config["hidden_size"] // heads)
    return heads, kv, head_dim


def _unpermute(t: Any, n_heads: int, head_dim: int) -> Any:
    """Rows from torchtune's interleaved RoPE order back to HF's rotate-half order, head by head."""
    rank = t.shape[-1]
    return t.view(n_heads, head_dim // 2, 2, rank).transpose(1, 2).reshape(n_heads * head_dim, rank)


def _hf_module(layer: str | None, block: str | None, name: str | None) -> str:
    if layer is None:
        return "lm_head"
    assert block is not None and name is not None
    if block == "attn":
        return f"model.layers.{layer}.self_attn.{HF_ATTN[name]}"
    return f"model.layers.{layer}.mlp.{HF_MLP[name]}"


def split_modules(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{hf module path: {"A": tensor, "B": tensor}} from torchtune adapter keys; anything else (DoRA magnitudes) is an
    error rather than silently dropped."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        m = TUNE_KEY.match(key)
        if not m:
            raise ValueError(f"unexpected key in the torchtune adapter: {key} (DoRA is not converted)")
        layer, block, name, _output, ab = m.groups()
        out.setdefault(_hf_module(layer, block, name), {})[ab.upper()] = value
    return out


def to_peft(state: dict[str, Any], family: str, hf_config: dict[str, Any], r: int,
            alpha: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(PEFT state dict, LoraConfig kwargs) for ``family``."""
    modules = split_modules(state)
    if family == "phi3":
        return _fuse_phi3(modules, hf_config, r, alpha)
    heads, kv, head_dim = head_dims(hf_config)
    tensors: dict[str, Any] = {}
    for module, ab in modules.items():
        b = ab["B"]
        if family in PERMUTED_FAMILIES and module.endswith(("q_proj", "k_proj")):
            b = _unpermute(b, heads if module.endswith("q_proj") else kv, head_dim)
        tensors[f"base_model.model.{module}.lora_A.weight"] = ab["A"].contiguous()
        tensors[f"base_model.model.{module}.lora_B.weight"] = b.contiguous()
    targets = sorted({m.rsplit(".", 1)[-1] for m in modules})
    return tensors, {"r": r, "lora_alpha": alpha, "target_modules": targets}


def _fuse(parts: list[tuple[dict[str, Any] | None, int]]) -> tuple[Any, Any, int]:
    """Stack A and lay the B blocks on the diagonal: the fused update equals the parts' updates concatenated."""
    import torch

    present = [(ab, rows, offset) for (ab, rows), offset in zip(parts, _offsets([p[1] for p in parts])) if ab]
    r = present[0][0]["A"].shape[0]
    a = torch.cat([ab["A"] for ab, _, _ in present], dim=0)
    b = torch.zeros(sum(p[1] for p in parts), r * len(present), dtype=present[0][0]["B"].dtype)
    for j, (ab, rows, offset) in enumerate(present):
        b[offset:offset + rows, j * r:(j + 1) * r] = ab["B"]
    return a, b, len(present)


def _offsets(sizes: list[int]) -> list[int]:
    out, total = [], 0
    for s in sizes:
        out.append(total)
        total += s
    return out


def _fuse_phi3(modules: dict[str, dict[str, Any]], hf_config: dict[str, Any], r: int,
               alpha: float) -> tuple[dict[str, Any], dict[str, Any]]:
    heads, kv, head_dim = head_dims(hf_config)
    inter = int(hf_config["intermediate_size"])
    tensors: dict[str, Any] = {}
    ranks: dict[str, int] = {}
    layers = sorted({int(m.split(".")[2]) for m in modules if m.startswith("model.layers.")})
    for i in layers:
        att, mlp = f"model.layers.{i}.self_attn", f"model.layers.{i}.mlp"
        groups = {
            f"{att}.qkv_proj": [(modules.get(f"{att}.{p}"), n * head_dim)
                                for p, n in (("q_proj", heads), ("k_proj", kv), ("v_proj", kv))],
            f"{mlp}.gate_up_proj": [(modules.get(f"{mlp}.{p}"), inter) for p in ("gate_proj", "up_proj")],
        }
        for fused, parts in groups.items():
            if any(ab for ab, _ in parts):
                a, b, n = _fuse(parts)
                tensors[f"base_model.model.{fused}.lora_A.weight"] = a
                tensors[f"base_model.model.{fused}.lora_B.weight"] = b
                ranks[fused.rsplit(".", 1)[-1]] = n
        for plain in (f"{att}.o_proj", f"{mlp}.down_proj"):
            if plain in modules:
                tensors[f"base_model.model.{plain}.lora_A.weight"] = modules[plain]["A"].contiguous()
                tensors[f"base_model.model.{plain}.lora_B.weight"] = modules[plain]["B"].contiguous()
                ranks.setdefault(plain.rsplit(".", 1)[-1], 1)
    if "lm_head" in modules:
        tensors["base_model.model.lm_head.lora_A.weight"] = modules["lm_head"]["A"].contiguous()
        tensors["base_model.model.lm_head.lora_B.weight"] = modules["lm_head"]["B"].contiguous()
        ranks["lm_head"] = 1
    multi = {name: n for name, n in ranks.items() if n > 1}
    kwargs: dict[str, Any] = {"r": r, "lora_alpha": alpha, "target_modules": sorted(ranks)}
    if multi:
        kwargs["rank_pattern"] = {name: r * n for name, n in multi.items()}
        kwargs["alpha_pattern"] = {name: alpha * n for name, n in multi.items()}
    return tensors, kwargs


def write_peft_adapter(tune_adapter: Path, out_dir: Path, family: str, hf_config: dict[str, Any], r: int,
                       alpha: float, dropout: float, base_model: str) -> list[str]:
    """Convert torchtune's ``adapter_model.pt`` into ``out_dir``; returns the PEFT target modules."""
    import torch
    from peft import LoraConfig
    from safetensors.torch import save_file

    state = torch.load(tune_adapter, map_location="cpu", weights_only=True)
    tensors, kwargs = to_peft(state, family, hf_config, r, alpha)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out_dir / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    LoraConfig(task_type="CAUSAL_LM", lora_dropout=dropout, base_model_name_or_path=base_model,
               **kwargs).save_pretrained(str(out_dir))
    return list(kwargs["target_modules"])
