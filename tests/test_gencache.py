"""The generation cache key follows evalsuite's own generation code: editing any module that decides what a cached
generation holds (rendering, tokenisation, stop ids, decoding, finish reasons, the engines) changes every column's
key, so an upgraded evalsuite never serves what the old code generated."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from evalsuite.probe import cache as gencache
from evalsuite.probe.cache import GENERATION_MODULES, code_digest, column_key, generation_code_digest, module_sources

PARTS = {"column": {"weights": "ab" * 32}, "base": {"id": "tiny"}, "device": "cpu", "seed": 0, "stops": [2]}


def copies(tmp: Path) -> dict[str, Path]:
    out = {}
    for name, path in module_sources().items():
        out[name] = tmp / f"{name}.py"
        shutil.copy(path, out[name])
    return out


def test_the_digested_modules_are_where_generation_is_decided() -> None:
    """A function that decides generation output moved to a module outside the list would make its edits invisible
    to the cache; this names each one by where it lives now."""
    from evalsuite.chat.encode import end_of_turn_token
    from evalsuite.chat.template import render
    from evalsuite.chat.tokenizer import TokenizerInfo, load_tokenizer
    from evalsuite.gguf.llama import LlamaCpp
    from evalsuite.gguf.tokenizer import LlamaCppBackend
    from evalsuite.probe.endpoint_target import EndpointCodec, EndpointTarget
    from evalsuite.probe.engines.attention import decode_attention
    from evalsuite.probe.engines.decode import greedy_decode
    from evalsuite.probe.engines.endpoint import EndpointEngine, to_generation
    from evalsuite.probe.engines.gguf import GGUFEngine
    from evalsuite.probe.engines.hf import HFEngine
    from evalsuite.probe.engines.merged import merged_weights
    from evalsuite.probe.engines.vllm import VLLMEngine
    from evalsuite.probe.engines.workers import run_batches
    from evalsuite.probe.generation import PromptCodec, role_headers
    from evalsuite.probe.gguf_target import GGUFCodec, gguf_column
    from evalsuite.probe.targets import Target, build_targets

    deciders = [render, greedy_decode, end_of_turn_token, HFEngine, PromptCodec, role_headers, Target,
                build_targets, TokenizerInfo, load_tokenizer, VLLMEngine, column_key, GGUFEngine, GGUFCodec,
                gguf_column, LlamaCpp, LlamaCppBackend, merged_weights, decode_attention, run_batches,
                EndpointEngine, to_generation, EndpointCodec, EndpointTarget]
    assert {d.__module__ for d in deciders} <= set(GENERATION_MODULES)
    assert set(module_sources()) == set(GENERATION_MODULES)
    assert all(p.is_file() for p in module_sources().values())


def test_same_sources_give_the_same_key(tmp_path: Path) -> None:
    same = copies(tmp_path)  # another place, the same bytes
    assert code_digest(same) == generation_code_digest()
    assert column_key(PARTS, code_digest(same)) == column_key(PARTS)
    assert column_key(PARTS) == column_key(dict(PARTS))  # deterministic within a process


def test_editing_how_a_new_turn_is_classified_changes_the_key(tmp_path: Path) -> None:
    edited = copies(tmp_path)
    source = edited["evalsuite.probe.generation"].read_text(encoding="utf-8")
    old = 'return list(ids[:i]), "new-turn", i + 1'
    assert old in source
    edited["evalsuite.probe.generation"].write_text(source.replace(old, 'return list(ids[:i]), "eos", i + 1'),
                                            encoding="utf-8")
    assert column_key(PARTS, code_digest(edited)) != column_key(PARTS)


@pytest.mark.parametrize("module", GENERATION_MODULES)
def test_any_edit_to_a_generation_module_changes_the_key(module: str, tmp_path: Path) -> None:
    edited = copies(tmp_path)
    edited[module].write_text(edited[module].read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert column_key(PARTS, code_digest(edited)) != column_key(PARTS)


def test_a_moved_module_fails_loudly_instead_of_dropping_out_of_the_key() -> None:
    with pytest.raises(RuntimeError, match=r"evalsuite\.no_such_module"):
        module_sources(("evalsuite.no_such_module",))


def test_the_other_parts_still_count() -> None:
    assert column_key({**PARTS, "seed": 1}) != column_key(PARTS)
    assert column_key({**PARTS, "stops": [2, 5]}) != column_key(PARTS)


@pytest.mark.slow
def test_the_runner_regenerates_when_the_generation_code_changes(leaky_adapter: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.probe.runner import ProbeOptions, run_probes

    battery = tmp_path / "tiny.yaml"
    battery.write_text("name: tiny\nscorer: exact_match\nexpect: upper\nmax_new_tokens: 8\ncases: [hello, abc]\n",
                       encoding="utf-8")
    options = ProbeOptions(batteries=[str(battery)], cache_dir=tmp_path / "cache")
    first = run_probes([leaky_adapter], options)
    again = run_probes([leaky_adapter], options)
    assert (first.generated, first.cached, again.generated, again.cached) == (2, 0, 0, 2)
    monkeypatch.setattr(gencache, "generation_code_digest", lambda: "0" * 64)  # as after an upgrade
    upgraded = run_probes([leaky_adapter], options)
    assert (upgraded.generated, upgraded.cached) == (2, 0)
