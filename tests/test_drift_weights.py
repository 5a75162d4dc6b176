"""`evalsuite drift` separates what a conversion breaks (template, stops, tokens: must be clean) from what the weights
do (how far greedy outputs move: a number, an error only when the GGUF holds the source's own weights).

Fast checks on hand-made tensor tables and results; the real case (SmolLM2's Q4_1 file beside its fp32 folder) is in
tests/test_real_model.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalsuite.drift.dynamic import compare_columns, flip_finding
from evalsuite.drift.findings import RULES, SERVING, SUBJECTS, Finding
from evalsuite.drift.run import DriftReport
from evalsuite.drift.weights import weight_facts
from evalsuite.gguf.reader import GGUFFile, TensorInfo
from evalsuite.results.schema import AdapterInfo, EngineInfo, Results, Sample, ScorerRef

# ggml type ids from ggml.h: F32 0, F16 1, Q4_1 3, Q8_0 8, Q6_K 14, BF16 30
F32, F16, Q4_1, Q8_0, Q6_K, BF16 = 0, 1, 3, 8, 14, 30


def gguf(*matrices: int, norms: int = F32) -> GGUFFile:
    tensors = {f"blk.{i}.w": TensorInfo(f"blk.{i}.w", (8, 8), t, 0) for i, t in enumerate(matrices)}
    tensors["blk.0.norm"] = TensorInfo("blk.0.norm", (8,), norms, 0)  # 1-D: always F32, never counted
    return GGUFFile(Path("m.gguf"), 3, {}, tensors)


@pytest.mark.parametrize(("matrices", "dtype", "same", "types"), [
    ((F32, F32), "float32", True, {"F32": 2}),
    ((F16, F16), "float16", True, {"F16": 2}),
    ((BF16,), "bfloat16", True, {"BF16": 1}),
    ((F16, F16), "float32", False, {"F16": 2}),  # f16 GGUF of an f32 model: other numbers
    ((Q4_1, Q4_1, Q6_K), "float32", False, {"Q4_1": 2, "Q6_K": 1}),
    ((Q8_0,), None, False, {"Q8_0": 1}),  # unknown source dtype: quantized is still not the same
    ((F32,), None, True, {"F32": 1}),
])
def test_weight_facts_compare_matrix_types_with_the_source_dtype(matrices: tuple[int, ...], dtype: str | None,
                                                                 same: bool, types: dict[str, int]) -> None:
    config = {"torch_dtype": dtype} if dtype else {}
    facts = weight_facts(gguf(*matrices), config)
    assert facts.gguf_types == types and facts.same is same
    assert ("expected to move" in facts.describe()) is not same
    assert ("quantized" in facts.describe()) == bool(set(types) - {"F32", "F16", "BF16"})


def test_transformers_5_dtype_key_is_read() -> None:
    assert weight_facts(gguf(F16), {"dtype": "float16"}).same
    assert not weight_facts(gguf(F16), {"dtype": "float32"}).same


def test_every_rule_has_a_subject_and_only_flips_are_about_weights() -> None:
    assert set(RULES) <= set(SUBJECTS)
    assert {r for r, s in SUBJECTS.items() if s == "weights"} <= {"gguf-output-flips", "endpoint-output-flips"}
    assert SUBJECTS["gguf-output-flips"] == "weights"
    assert set(SUBJECTS.values()) == {*SERVING, "weights"}


def _results(pairs: list[tuple[bool, bool]]) -> Results:
    """Column "hf" passes the first of each pair, "gg" the second; every output differs when the verdicts do."""
    samples = [Sample(battery="b", case=f"c{i}", adapter=name, prompt=f"p{i}", output=str(ok),
                      finish_reason="eos" if ok else "max-tokens", tokens=1, latency_s=0.0, scorer=ScorerRef("s"),
                      passed=ok, score=float(ok))
               for i, pair in enumerate(pairs) for name, ok in zip(("hf", "gg"), pair, strict=True)]
    return Results(created="t", evalsuite_version="0", engine=EngineInfo("hf", 0, 8),
                   adapters=[AdapterInfo("hf", "merged", "m"), AdapterInfo("gg", "gguf", "m.gguf")],
                   samples=samples, metrics=[])


# 12 cases lost, none won: McNemar p = 2 * 0.5**12, far below 0.05
LOST = [(True, False)] * 12 + [(True, True)] * 8


def test_significant_flips_are_an_error_only_for_the_sources_own_weights() -> None:
    summary = compare_columns(_results(LOST), "hf", "gg")
    assert summary["mcnemar_p"] < 0.05 and summary["flips"] == 12
    assert summary["ended_eos"] == {"source": 20, "gguf": 8}
    same = flip_finding(summary, 0.05, weight_facts(gguf(F32), {"dtype": "float32"}))
    quantized = flip_finding(summary, 0.05, weight_facts(gguf(Q4_1), {"dtype": "float32"}))
    assert same is not None and same.severity == "error"
    assert quantized is not None and quantized.severity == "warning"
    assert "Q4_1" in quantized.message and "drift.agreement" in quantized.message
    assert flip_finding(summary, 0.05).severity == "error"  # type: ignore[union-attr]  # weights unknown: as before


def _report(findings: list[Finding], quantized: bool) -> DriftReport:
    summary = compare_columns(_results(LOST), "hf", "gg")
    facts = weight_facts(gguf(Q4_1 if quantized else F32), {"dtype": "float32"})
    flips = flip_finding(summary, 0.05, facts)
    assert flips is not None
    return DriftReport(Path("src"), Path("m.gguf"), [*findings, flips], summary, weights=facts)


def test_quantized_file_with_clean_serving_checks_exits_0_and_reports_the_number() -> None:
    report = _report([], quantized=True)
    assert report.exit_code == 0
    data = report.to_json()
    assert data["serving"] == {"template": [], "stops": [], "tokens": []}
    assert data["weights"] == {"gguf_types": {"Q4_1": 1}, "source_type": "F32", "same": False}
    assert [f["subject"] for f in data["findings"]] == ["weights"]
    text = "\n".join(report.lines())
    head, weights = text.split("\nweights (")
    assert "template  clean" in head and "stops     clean" in head and "tokens    clean" in head
    assert "gguf-output-flips" not in head  # the flips are listed under weights, not with the serving checks
    assert "40.0% identical outputs" in weights and "warning gguf-output-flips" in weights
    assert "HF 20/20, GGUF 8/20" in weights


def test_a_serving_error_fails_whatever_the_weights() -> None:
    stops = Finding("gguf-eos-mismatch", "training ends turns with '<|im_end|>' ...")
    report = _report([stops], quantized=True)
    assert report.exit_code == 1
    assert report.to_json()["serving"]["stops"] == ["gguf-eos-mismatch"]
    head = "\n".join(report.lines()).split("\nweights (")[0]
    assert "stops     gguf-eos-mismatch" in head and "error gguf-eos-mismatch" in head
    assert _report([], quantized=False).exit_code == 1  # same weights, significant flips: an error
