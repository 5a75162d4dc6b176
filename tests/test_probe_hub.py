"""Hub ids from the local Hugging Face cache only (no model, no network): what counts as an id, the cache read at
call time, a snapshot found by its ``refs/main``, and an absent id named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalsuite.errors import EvalsuiteError
from evalsuite.probe.hub import cached_snapshot, looks_like_hub_id, resolve_base
from evalsuite.report.provenance import kind_text, provenance_text
from evalsuite.results.schema import AdapterInfo


@pytest.mark.parametrize(("value", "is_id"), [
    ("meta-llama/Llama-3.2-1B", True), ("org/name.v2", True), ("runs/qwen05", True),
    ("./runs/qwen05", False), ("/abs/path", False), ("~/x/y", False), ("a/b/c", False), ("name", False),
    ("../up/x", False)])
def test_what_counts_as_a_hub_id(value: str, is_id: bool) -> None:
    assert looks_like_hub_id(value) is is_id


def test_snapshots_resolve_from_the_cache_named_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "models--org--tiny"
    snap = repo / "snapshots" / ("c" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}", encoding="utf-8")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c" * 40, encoding="utf-8")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert cached_snapshot("org/tiny") == snap
    base = resolve_base("org/tiny", "adapter", "adapter_config.json")
    assert (base.name, base.folder, base.hub_id, base.revision) == ("org/tiny", snap, "org/tiny", "c" * 40)
    assert cached_snapshot("org/absent") is None
    with pytest.raises(EvalsuiteError, match=r"adapter: base model 'org/absent' \(from adapter_config.json\) is not "
                                             r"a folder and not in the local Hugging Face cache"):
        resolve_base("org/absent", "adapter", "adapter_config.json")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert cached_snapshot("org/tiny") is None


def test_report_cells_say_how_a_column_was_given_and_where_its_parts_came_from() -> None:
    info = AdapterInfo("ckpt", "adapter", "/m/base", source="checkpoint", external=True, provenance={
        "base": {"name": "/m/base", "from": "adapter_config.json"},
        "checkpoint": {"name": "checkpoint-60", "output_dir": "/runs/out"},
        "template": {"from": "base", "file": "/m/base/tokenizer_config.json"},
        "tokenizer": {"from": "base", "file": "/m/base/tokenizer.json"},
        "stops": {"ids": [2], "from": ["tokenizer eos_token <|im_end|>"]}})
    assert kind_text(info) == "adapter (checkpoint, external)"
    assert provenance_text(info) == ("base from adapter_config.json; checkpoint-60 of runs/out; template from base "
                                     "(base/tokenizer_config.json); tokenizer from base (base/tokenizer.json); "
                                     "stops [2] from tokenizer eos_token <|im_end|>")
    old = AdapterInfo("old", "adapter", "/m")  # a version 1 column: no source, no provenance
    assert kind_text(old) == "adapter" and provenance_text(old) == "–"
