"""Export and drift rules on artifacts built by hand that actually carry each case: a tokenizer_config.json WITH a
chat_template, a PEFT folder with its own generation_config.json, GGUF headers with bad UTF-8 in their strings and
with the end of turn declared only as ``eot``, and paired outputs that agree in text but not in finish reason."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from evalsuite.chat.tokenizer import load_tokenizer
from evalsuite.drift.dynamic import compare_columns, flip_finding
from evalsuite.drift.static import GGUFSide, SourceSide, eos_findings
from evalsuite.export.merge import ExportSource, _write_tokenizer, open_source
from evalsuite.gguf.reader import read_gguf
from evalsuite.results.schema import AdapterInfo, EngineInfo, Results, Sample, ScorerRef

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-base"
IM_END, END_OF_TEXT = 2, 0  # the tiny base's ids of <|im_end|> (its template's end of turn) and <|endoftext|>


# -- export --------------------------------------------------------------------------------------------------------

def test_merged_tokenizer_config_loses_a_stale_template_and_keeps_the_rest(tmp_path: Path) -> None:
    tok = tmp_path / "tok"
    tok.mkdir()
    config = {"eos_token": "<|im_end|>", "model_max_length": 512, "chat_template": "{{ 'STALE base template' }}"}
    (tok / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (tok / "special_tokens_map.json").write_text('{"eos_token": "<|im_end|>"}', encoding="utf-8")
    out = tmp_path / "merged"
    out.mkdir()
    (out / "chat_template.json").write_text('{"chat_template": "old"}', encoding="utf-8")  # an earlier export's
    source = ExportSource(tmp_path / "adapter", "base", tok, "{{ 'TRAINED template' }}", {}, None)
    _write_tokenizer(source, out)
    assert json.loads((out / "tokenizer_config.json").read_text()) == {"eos_token": "<|im_end|>",
                                                                      "model_max_length": 512}
    assert (out / "chat_template.jinja").read_text() == "{{ 'TRAINED template' }}"
    assert not (out / "chat_template.json").exists()
    assert json.loads((tok / "tokenizer_config.json").read_text()) == config  # the source is never touched


def _peft_folder(root: Path, base: Path, own_generation: dict[str, Any] | None) -> Path:
    folder = root / "adapter"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "r": 8}))
    (folder / "adapter_model.safetensors").write_bytes(b"not read by open_source")
    if own_generation is not None:
        (folder / "generation_config.json").write_text(json.dumps(own_generation))
    return folder


@pytest.mark.parametrize("own", [{"eos_token_id": [2, 7], "do_sample": False}, None])
def test_a_peft_folder_s_own_generation_config_wins_over_the_base_s(tmp_path: Path,
                                                                     own: dict[str, Any] | None) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "generation_config.json").write_text(json.dumps({"eos_token_id": 2, "do_sample": True}))
    source = open_source(_peft_folder(tmp_path, base, own))
    assert source.generation_config == (own if own is not None else {"eos_token_id": 2, "do_sample": True})
    assert source.base_model == str(base) and source.template is None  # no tokenizer.json anywhere


# -- the GGUF reader -------------------------------------------------------------------------------------------------

def _s(raw: bytes) -> bytes:
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    return _s(key.encode()) + struct.pack("<I", vtype) + payload


def gguf(path: Path, pairs: list[bytes]) -> Path:
    """A GGUF v3 header with these key/value pairs and no tensor."""
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(pairs)) + b"".join(pairs))
    return path


def _string_array(key: str, items: list[bytes]) -> bytes:
    return _kv(key, 9, struct.pack("<IQ", 8, len(items)) + b"".join(_s(i) for i in items))


def test_bad_utf8_in_gguf_strings_is_replaced_not_dropped(tmp_path: Path) -> None:
    path = gguf(tmp_path / "bad.gguf", [
        _kv("general.name", 8, _s(b"caf\xe9 \xff!")),  # Latin-1 bytes in a UTF-8 field
        _string_array("tokenizer.ggml.tokens", [b"ok", b"\xe2\x82", "é".encode(), b"a\x80b"]),  # partial sequences
    ])
    meta = read_gguf(path).metadata
    assert meta["general.name"] == "caf\ufffd \ufffd!"
    assert meta["tokenizer.ggml.tokens"] == ["ok", "\ufffd", "é", "a\ufffdb"]  # the same count: ids keep their place


# -- the static eos check: which declared ids count as the end of turn ----------------------------------------------

class _Llama:
    """What eos_findings asks llama.cpp: the ids it stops on (it stops on both) and their text."""

    eog_ids = frozenset({IM_END, END_OF_TEXT})

    def token_text(self, tid: int) -> str:
        return {IM_END: "<|im_end|>", END_OF_TEXT: "<|endoftext|>"}[tid]


def _u32(key: str, value: int) -> bytes:
    return _kv(key, 4, struct.pack("<I", value))


@pytest.mark.parametrize(("declared", "flagged"), [
    ({"eos": IM_END}, False),
    ({"eos": END_OF_TEXT, "eot": IM_END}, False),  # the end of turn declared only as eot: llama.cpp's own field
    ({"eot": IM_END}, False),
    ({"eos": END_OF_TEXT}, True),  # nothing declares <|im_end|>: runtimes that stop on eos run away
    ({"eos": END_OF_TEXT, "eot": END_OF_TEXT}, True),
])
def test_the_end_of_turn_counts_when_declared_as_eos_or_eot(tmp_path: Path, declared: dict[str, int],
                                                            flagged: bool) -> None:
    tk = load_tokenizer(TINY)
    assert tk.token_id("<|im_end|>") == IM_END and tk.token_id("<|endoftext|>") == END_OF_TEXT
    file = read_gguf(gguf(tmp_path / "m.gguf", [_u32(f"tokenizer.ggml.{name}_token_id", tid)
                                                for name, tid in declared.items()]))
    src = SourceSide(TINY, tk, str(tk.chat_template), {})
    found = eos_findings(src, GGUFSide(file, _Llama(), tk, str(tk.chat_template)))  # type: ignore[arg-type]
    assert [f.rule for f in found] == (["gguf-eos-mismatch"] if flagged else [])
    if flagged:
        assert "declares eos '<|endoftext|>' (id 0)" in found[0].message


# -- dynamic drift: agreement ----------------------------------------------------------------------------------------

def _paired(rows: list[tuple[str, str, str, str]]) -> Results:
    """(hf output, hf finish, gguf output, gguf finish) per case; every case passes on both sides."""
    samples = [Sample(battery="b", case=f"c{i}", adapter=name, prompt=f"p{i}", output=out, finish_reason=finish,
                      tokens=1, latency_s=0.0, scorer=ScorerRef("s"), passed=True, score=1.0)
               for i, row in enumerate(rows) for name, out, finish in (("hf", *row[:2]), ("gg", *row[2:]))]
    return Results(created="t", evalsuite_version="0", engine=EngineInfo("hf", 0, 8),
                   adapters=[AdapterInfo("hf", "adapter", "tiny"), AdapterInfo("gg", "gguf", "x.gguf")],
                   samples=samples, metrics=[])


def test_agreement_needs_the_same_text_and_the_same_finish_reason() -> None:
    rows = [("HELLO", "eos", "HELLO", "eos"), ("HELLO", "eos", "HELLO", "max-tokens"),  # cut at the cap, same text
            ("HI", "eos", "HI", "new-turn"), ("A", "eos", "B", "eos")]
    summary = compare_columns(_paired(rows), "hf", "gg")
    assert (summary["cases"], summary["agreement"], summary["differing"], summary["flips"]) == (4, 0.25, 3, 0)
    assert summary["batteries"]["b"]["agreement"] == 0.25


@pytest.mark.parametrize(("p", "severity"), [(0.0624, "error"), (0.0625, "warning"), (0.0626, "warning")])
def test_flips_are_an_error_only_below_alpha(p: float, severity: str) -> None:
    summary = {"columns": {"source": "hf", "gguf": "m.gguf"}, "flips": 5, "cases": 10, "pass_to_fail": 5,
               "fail_to_pass": 0, "mcnemar_p": p,
               "flipped": [{"direction": "pass->fail", "battery": "b", "case": "c0", "source_output": "A",
                            "gguf_output": "B"}]}
    finding = flip_finding(summary, alpha=0.0625)
    assert finding is not None and (finding.rule, finding.severity) == ("gguf-output-flips", severity)
    assert flip_finding({**summary, "flips": 0, "flipped": []}, alpha=0.0625) is None
