"""The CPU decode attention (``evalsuite.probe.engines.attention``) computes what transformers' SDPA function does:
the same numbers for one query position per row (grouped key/value heads, left padding masked), SDPA itself for
everything else, and an engine using it decodes ``model.generate``'s tokens with SDPA attention."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")


class Module(torch.nn.Module):  # what an attention layer passes as ``module``
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups, self.is_causal, self.training = groups, True, False


def tensors(rows: int, heads: int, kv_heads: int, q_len: int, length: int, dtype: Any = None) -> tuple[Any, ...]:
    gen = torch.Generator().manual_seed(rows * 1000 + heads * 10 + kv_heads + length)
    q = torch.randn(rows, heads, q_len, 16, generator=gen, dtype=dtype)
    k = torch.randn(rows, kv_heads, length, 16, generator=gen, dtype=dtype)
    v = torch.randn(rows, kv_heads, length, 16, generator=gen, dtype=dtype)
    mask = torch.ones(rows, 1, q_len, length, dtype=torch.bool)
    mask[0, :, :, : length // 2] = False  # a left-padded row
    if q_len > 1:
        mask &= torch.ones(q_len, length, dtype=torch.bool).tril(length - q_len)
    return q, k, v, mask


@pytest.mark.parametrize(("heads", "kv_heads"), [(8, 4), (4, 4), (6, 2)])
@pytest.mark.parametrize("with_mask", [True, False])
def test_one_position_per_row_gives_sdpa_numbers(heads: int, kv_heads: int, with_mask: bool) -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from evalsuite.probe.engines.attention import decode_attention

    q, k, v, mask = tensors(5, heads, kv_heads, 1, 23)
    mask = mask if with_mask else None
    module = Module(heads // kv_heads)
    ours, _ = decode_attention(module, q, k, v, mask, scaling=0.3)
    theirs, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)
    assert ours.shape == theirs.shape == (5, 1, heads, 16)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    if with_mask:  # the padded positions are really left out: changing them changes nothing
        k2 = k.clone()
        k2[0, :, :11] = 100.0
        torch.testing.assert_close(decode_attention(module, q, k2, v, mask, scaling=0.3)[0], ours)


@pytest.mark.parametrize("case", ["prefill", "bf16", "float mask", "softcap"])
def test_everything_else_is_sdpa_itself(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.integrations import sdpa_attention

    from evalsuite.probe.engines.attention import decode_attention

    q, k, v, mask = tensors(3, 4, 2, 6 if case == "prefill" else 1, 9,
                            torch.bfloat16 if case == "bf16" else None)
    kwargs: dict[str, Any] = {"softcap": 30.0} if case == "softcap" else {}
    if case == "float mask":
        mask = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    calls = []
    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", lambda *a, **kw: calls.append(kw) or ("sdpa", None))
    assert decode_attention(Module(2), q, k, v, mask, scaling=0.25, **kwargs) == ("sdpa", None)
    assert calls == [{"dropout": 0.0, "scaling": 0.25, **kwargs}]


def test_engine_decodes_what_generate_does_with_sdpa(demo_adapter: Path) -> None:
    from decode_support import assert_same_tokens, demo_batch

    from evalsuite.probe.engines.attention import NAME
    from evalsuite.probe.engines.decode import greedy_decode

    batch = demo_batch(demo_adapter, device="cpu")
    base = batch.engine.model.get_base_model()
    assert base.config._attn_implementation == NAME
    with torch.inference_mode():
        ours = greedy_decode(batch.engine.model, batch.ids, batch.mask, 64, batch.stops)
        base.set_attn_implementation("sdpa")
        reference = batch.engine.model.generate(**batch.generate_kwargs())
    assert_same_tokens(batch, reference, ours.rows)
