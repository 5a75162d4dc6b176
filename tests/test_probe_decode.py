"""The hf engine's CPU speed paths change no output: prompts prefilled in chunks of similar length give the tokens of
one prefill of the whole padded batch; a batch of one adapter run on merged copies of the weights gives the texts of
peft's LoRA layers and leaves the base weights as they were; adapters the merge cannot represent keep peft's path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evalsuite.probe.engines.decode import chunks


@given(st.lists(st.integers(1, 300), min_size=1, max_size=70), st.integers(0, 200))
def test_chunks_cover_every_row_in_order_and_never_cost_more_than_one_pass(lengths: list[int], overhead: int) -> None:
    parts = chunks(lengths, overhead)
    assert [a for a, _ in parts] == [0, *[b for _, b in parts[:-1]]] and parts[-1][1] == len(lengths)
    assert all(a < b for a, b in parts)
    cost = sum((b - a) * max(lengths[a:b]) + overhead for a, b in parts)
    assert cost <= len(lengths) * max(lengths) + overhead


def test_close_lengths_prefill_at_once_and_spread_ones_in_chunks() -> None:
    assert chunks([20, 21, 22, 22], 32) == [(0, 4)]
    assert chunks([4] * 16 + [60] * 16, 32) == [(0, 16), (16, 32)]


@pytest.fixture(scope="module")
def engine(demo_adapter: Path) -> Any:
    from evalsuite.probe.engines import EngineSpec
    from evalsuite.probe.engines.hf import HFEngine
    from evalsuite.probe.runner import ProbeOptions, plan_probes

    target = plan_probes([demo_adapter], ProbeOptions(batteries=["uppercase-echo"])).targets[0]
    return HFEngine(EngineSpec(target.base_model, {"a": target.codec, None: target.codec}, {"a": demo_adapter},
                               device="cpu"))


def prompts(engine: Any, n: int = 24) -> list[Any]:
    from evalsuite.probe.batteries import load_battery, resolve_batteries
    from evalsuite.probe.generation import Request

    cases = [c for name in ("runaway-turns", "uppercase-echo", "cyrillic")
             for c in load_battery(resolve_batteries([name])[0]).cases]
    return [Request(c.messages, 32) for c in cases[:n]]


@pytest.mark.slow
def test_chunked_prefill_decodes_the_tokens_of_one_prefill(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from evalsuite.probe.engines import decode

    codec = engine.spec.codec("a")
    encoded = sorted((codec.prompt_ids(r.messages) for r in prompts(engine)), key=len)
    width = max(map(len, encoded))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in encoded])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in encoded])
    stops = set(codec.generation_stop_ids)
    assert len(chunks([len(p) for p in encoded])) > 1  # the batch really is prefilled in chunks
    with torch.inference_mode(), engine.model.disable_adapter():
        chunked = decode.greedy_decode(engine.model, ids, mask, 32, stops)
        monkeypatch.setattr(decode, "CHUNK_COST", 10**9)  # one chunk: the whole padded batch at once
        whole = decode.greedy_decode(engine.model, ids, mask, 32, stops)
    assert chunked.rows == whole.rows and any(len(r) < 32 for r in whole.rows)


@pytest.mark.slow
def test_a_merged_adapter_generates_what_peft_does_and_leaves_the_base_untouched(
        engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from evalsuite.probe.engines import hf
    from evalsuite.probe.generation import GenerationSettings

    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    requests, settings = prompts(engine), GenerationSettings(batch_size=8)
    assert hf.mergeable_layers(engine.model, "a") is not None
    merged = engine.generate(requests, "a", settings)
    after = engine.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    monkeypatch.setattr(hf, "mergeable_layers", lambda model, adapter: None)  # peft's LoRA layers
    peft_path = engine.generate(requests, "a", settings)
    assert [(g.text, g.finish_reason) for g in merged] == [(g.text, g.finish_reason) for g in peft_path]
    assert [g.text for g in merged] != [g.text for g in engine.generate(requests, None, settings)]  # not the base


def test_adapters_the_merge_cannot_represent_keep_peft_layers(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.probe.engines import merged

    config = engine.model.peft_config["a"]
    assert merged.mergeable_layers(engine.model, "a")
    monkeypatch.setattr(config, "modules_to_save", ["lm_head"])  # a trained copy the merge would lose
    assert merged.mergeable_layers(engine.model, "a") is None
    monkeypatch.undo()
    monkeypatch.setattr(merged, "MERGE_BUDGET", 1024)  # copies over the memory budget
    assert merged.mergeable_layers(engine.model, "a") is None


def test_the_cache_goes_by_the_name_the_model_takes(engine: Any) -> None:
    """transformers renamed ``past_key_values`` to ``cache`` (the old name warns, then goes): the loop passes the
    name the model's forward declares, so a model that dropped the old one never decodes without its cache."""
    import warnings

    import torch

    from evalsuite.probe.engines.decode import cache_kwarg, greedy_decode

    class Older(torch.nn.Module):
        def forward(self, input_ids: Any, past_key_values: Any = None, **kwargs: Any) -> Any:
            raise AssertionError

    assert cache_kwarg(Older()) == "past_key_values"
    codec = engine.spec.codec("a")
    ids = torch.tensor([codec.prompt_ids(prompts(engine, 1)[0].messages)])
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated name on the way
        assert len(greedy_decode(engine.model, ids, torch.ones_like(ids), 4, set()).rows[0]) == 4
