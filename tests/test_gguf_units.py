"""Fast checks of the GGUF pieces that need no model: export's staging keeps every token id, the converter is found
where the user says, and the paired drift comparison, its McNemar test and its gates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsuite.drift.dynamic import apply_gates, compare_columns, flip_finding, parse_drift_gates
from evalsuite.drift.findings import first_difference
from evalsuite.errors import EvalsuiteError
from evalsuite.export.llamacpp import SPACE, find_converter, stage
from evalsuite.results.schema import AdapterInfo, EngineInfo, Results, Sample, ScorerRef
from evalsuite.results.stats import mcnemar_exact_p

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    out = tmp_path_factory.mktemp("stage") / "s"
    stage(tiny_base, out)
    return out


def test_staging_pads_to_the_embedding_and_writes_the_bos_flags(staged: Path) -> None:
    tj = json.loads((staged / "tokenizer.json").read_text())
    ids = [*tj["model"]["vocab"].values(), *(t["id"] for t in tj["added_tokens"])]
    assert sorted(set(ids)) == list(range(448))
    config = json.loads((staged / "tokenizer_config.json").read_text())
    assert config["add_bos_token"] is False and config["add_eos_token"] is False
    assert config["add_prefix_space"] is False
    listed = config.get("extra_special_tokens") or config.get("additional_special_tokens")
    assert "[PAD421]" in listed and "[PAD447]" in listed
    assert (staged / "model.safetensors").is_symlink()


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",), exclude_characters=SPACE), max_size=60))
def test_staged_tokenizer_gives_the_trained_ids(staged: Path, text: str) -> None:
    from tokenizers import Tokenizer

    original = Tokenizer.from_file(str(ROOT / "fixtures" / "tiny-base" / "tokenizer.json"))
    ready = Tokenizer.from_file(str(staged / "tokenizer.json"))
    ids = original.encode(text, add_special_tokens=False).ids
    assert ready.encode(text, add_special_tokens=False).ids == ids
    assert ready.decode(ids) == original.decode(ids)


def test_converter_found_in_a_checkout_or_an_sdist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = tmp_path / "llama.cpp"
    checkout.mkdir()
    (checkout / "convert_hf_to_gguf.py").write_text("")
    sdist = tmp_path / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"
    sdist.mkdir(parents=True)
    shutil.copy(checkout / "convert_hf_to_gguf.py", sdist)
    assert find_converter(checkout) == checkout / "convert_hf_to_gguf.py"
    assert find_converter(tmp_path / "llama_cpp_python-0.3.36") == sdist / "convert_hf_to_gguf.py"
    monkeypatch.setenv("LLAMA_CPP_DIR", str(checkout))
    assert find_converter(None) == checkout / "convert_hf_to_gguf.py"
    monkeypatch.delenv("LLAMA_CPP_DIR")
    with pytest.raises(EvalsuiteError, match="--llama-cpp DIR"):
        find_converter(None)


def _results(hf: list[tuple[bool, str]], gguf: list[tuple[bool, str]]) -> Results:
    samples = [Sample(battery="b", case=f"c{i}", adapter=name, prompt=f"p{i}", output=out, finish_reason="eos",
                      tokens=1, latency_s=0.0, scorer=ScorerRef("s"), passed=ok, score=float(ok))
               for name, rows in (("hf", hf), ("gg", gguf)) for i, (ok, out) in enumerate(rows)]
    return Results(created="t", evalsuite_version="0", engine=EngineInfo("hf", 0, 8),
                   adapters=[AdapterInfo("hf", "adapter", "tiny"), AdapterInfo("gg", "gguf", "x.gguf")],
                   samples=samples, metrics=[])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.sampled_from(["A", "B"])), min_size=1, max_size=40))
def test_paired_comparison_counts_flips_and_uses_mcnemar(rows: list[tuple[bool, bool, str]]) -> None:
    hf = [(a, "A") for a, _, _ in rows]
    gg = [(b, out) for _, b, out in rows]
    summary = compare_columns(_results(hf, gg), "hf", "gg")
    lost = sum(a and not b for a, b, _ in rows)
    won = sum(b and not a for a, b, _ in rows)
    assert (summary["pass_to_fail"], summary["fail_to_pass"], summary["flips"]) == (lost, won, lost + won)
    assert summary["mcnemar_p"] == mcnemar_exact_p(lost, won)
    assert summary["agreement"] == sum(out == "A" for _, _, out in rows) / len(rows)
    finding = flip_finding(summary, 0.05)
    assert (finding is None) == (lost + won == 0)
    if finding is not None:
        assert finding.severity == ("error" if summary["mcnemar_p"] < 0.05 else "warning")


def test_drift_gates_are_thresholds_on_drift_metrics() -> None:
    gates = parse_drift_gates(["drift.flips <= 2", "drift.agreement >= 0.95"])
    lines, ok = apply_gates(gates, {"flips": 3, "agreement": 0.97})
    assert not ok and lines[0].startswith("FAIL drift.flips <= 2") and lines[1].startswith("PASS")
    for bad in ("drift.flips: +1", "squad.f1 >= 3", "drift.speed <= 1", "drift.flips >> 2"):
        with pytest.raises(EvalsuiteError):
            parse_drift_gates([bad])


def test_first_difference_quotes_both_sides() -> None:
    text = first_difference("<|im_start|>user\nhi", "user: hi")
    assert text.startswith("at character 0:") and "'<|im_start|>user" in text and "'user: hi'" in text
