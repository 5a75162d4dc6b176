"""A GGUF as a probe column and `evalsuite drift`'s paired run, on a GGUF exported from the trained demo adapter.

The f32 GGUF must agree with the HF adapter column on >= 90% of greedy outputs (measured here: all of them, see the
README); the template-replaced GGUF must flip verdicts (gguf-output-flips) and agree again when rendered with the
training template; a GGUF exported from the adapter that never learned to stop must run away in llama.cpp as it does
in transformers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from gguf_support import CLI_TIMEOUT, evalsuite, new_metadata

from evalsuite.results.io import load_results
from evalsuite.results.schema import Results, Sample

pytestmark = pytest.mark.slow
OTHER_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                  "{% if add_generation_prompt %}assistant: {% endif %}")


def paired(results: Results, a: str, b: str) -> list[tuple[Sample, Sample]]:
    by_key = {(s.battery, s.case): s for s in results.samples if s.adapter == b}
    return [(s, by_key[(s.battery, s.case)]) for s in results.samples if s.adapter == a]


def agreement(results: Results, a: str, b: str) -> float:
    pairs = paired(results, a, b)
    assert pairs
    return sum(x.output == y.output and x.finish_reason == y.finish_reason for x, y in pairs) / len(pairs)


@pytest.fixture(scope="module")
def probe_results_file(demo_adapter: Path, demo_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("probe") / "results.json"
    done = evalsuite("probe", str(demo_adapter), str(demo_gguf), "--base", "--battery", "uppercase-echo",
                     "--battery", "runaway-turns", "--out", str(out))
    assert done.returncode in (0, 1), done.stderr
    assert "demo.gguf" in done.stdout  # the summary has the GGUF column
    return out


@pytest.fixture(scope="module")
def probe_results(probe_results_file: Path) -> Results:
    return load_results(probe_results_file)


def test_a_gguf_judges_two_columns(probe_results_file: Path, demo_gguf: Path, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_bytes(probe_results_file.read_bytes())  # the judge writes its verdicts into the file
    done = evalsuite("judge", str(results), "--judge", str(demo_gguf), "--pair", "demo:base", "--battery",
                     "uppercase-echo", "--max-new-tokens", "8", "--no-cache")
    assert done.returncode == 0, done.stderr
    assert re.search(r"uppercase-echo\s+demo \d+ · tie \d+ · base \d+", done.stdout), done.stdout
    (judged,) = load_results(results).judgements_for("uppercase-echo")
    cases = {s.case for s in load_results(probe_results_file).samples if s.battery == "uppercase-echo"}
    assert {v.case for v in judged.verdicts} == cases
    assert all(len(v.answers) == 2 for v in judged.verdicts if v.reason != "identical")  # both orders asked


def test_gguf_column_agrees_with_the_hf_adapter(probe_results: Results) -> None:
    names = [a.name for a in probe_results.adapters]
    assert names == ["base", "demo", "demo.gguf"]
    assert probe_results.adapter("demo.gguf").kind == "gguf"
    assert agreement(probe_results, "demo", "demo.gguf") >= 0.9
    upper = probe_results.metric("uppercase-echo", "demo.gguf", "accuracy")
    assert upper is not None and upper.value >= 0.8
    # The GGUF stops where the HF adapter stops: a case it does not end with eos runs away on the HF side too (the
    # demo adapter's 'how are youuuuu' repeats its U past max-tokens in both engines), so no runaway is the export's.
    pairs = paired(probe_results, "demo.gguf", "demo")
    assert sum(g.finish_reason == "eos" for g, _ in pairs) >= 0.9 * len(pairs)
    assert all(h.finish_reason == g.finish_reason for g, h in pairs if g.finish_reason != "eos")


def test_gguf_column_records_its_stops_and_template(probe_results: Results) -> None:
    column = probe_results.engine.settings["columns"]["demo.gguf"]
    assert column["engine"] == "gguf" and column["template"] == "embedded"
    assert "<|im_end|>" in column["stop_tokens"] and 2 in column["stop_ids"]


def test_report_compares_the_gguf_column_with_the_base_it_was_probed_beside(probe_results: Results) -> None:
    from evalsuite.report.columns import make_layout

    assert probe_results.adapter("demo.gguf").base_model == probe_results.adapter("demo").base_model
    assert probe_results.adapter("demo.gguf").path.endswith("demo.gguf")
    layout = make_layout([("results.json", probe_results)], None)
    assert len(layout.groups) == 1 and not layout.banners
    column = next(c for c in layout.columns if c.name == "demo.gguf")
    assert column.ref is not None and column.ref.name == "base"


def test_drift_pairs_the_batteries_and_gates(demo_adapter: Path, demo_gguf: Path, tmp_path: Path) -> None:
    out = tmp_path / "paired.json"
    done = evalsuite("drift", str(demo_adapter), str(demo_gguf), "--battery", "uppercase-echo", "--format", "json",
                     "--gate", "drift.flips <= 2", "--gate", "drift.agreement >= 0.9", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert [f["rule"] for f in report["findings"] if f["severity"] == "error"] == []
    assert report["dynamic"]["cases"] == 100 and report["dynamic"]["agreement"] >= 0.9
    assert all(line.startswith("PASS") for line in report["gates"])
    assert load_results(out).adapter("demo.gguf").kind == "gguf"
    strict = evalsuite("drift", str(demo_adapter), str(demo_gguf), "--battery", "uppercase-echo",
                       "--gate", "drift.agreement > 1")
    assert strict.returncode == 1 and "FAIL drift.agreement > 1" in strict.stdout
    bad = evalsuite("drift", str(demo_adapter), str(demo_gguf), "--gate", "uppercase-echo.accuracy >= 0.9")
    assert bad.returncode == 2 and "drift.METRIC" in bad.stderr


def test_replaced_template_flips_outputs_and_training_template_restores_them(demo_adapter: Path, demo_gguf: Path,
                                                                             llama_cpp: Path, tmp_path: Path) -> None:
    broken = new_metadata(llama_cpp, demo_gguf, tmp_path / "other.gguf", "--chat-template", OTHER_TEMPLATE)
    done = evalsuite("drift", str(demo_adapter), str(broken), "--battery", "uppercase-echo", "--format", "json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    flips = next(f for f in report["findings"] if f["rule"] == "gguf-output-flips")
    assert flips["severity"] == "error" and report["dynamic"]["pass_to_fail"] > 10
    assert report["dynamic"]["mcnemar_p"] < 0.05 and flips["examples"]
    out = tmp_path / "r.json"
    again = evalsuite("probe", str(demo_adapter), str(broken), "--battery", "uppercase-echo", "--gguf-template",
                      "training", "--out", str(out))
    assert again.returncode in (0, 1), again.stderr
    results = load_results(out)
    assert agreement(results, "demo", "other.gguf") >= 0.9
    assert results.engine.settings["columns"]["other.gguf"]["template"] == "training"


def test_a_gguf_that_never_stops_runs_away_like_the_hf_adapter(llama_cpp: Path, broken_terminator_adapter: Path,
                                                               tmp_path: Path) -> None:
    gguf = tmp_path / "runaway.gguf"
    done = evalsuite("export", str(broken_terminator_adapter), "--gguf", str(gguf), "--llama-cpp", str(llama_cpp))
    assert done.returncode in (0, 1), done.stderr
    out = tmp_path / "r.json"
    evalsuite("probe", str(broken_terminator_adapter), str(gguf), "--battery", "runaway-turns", "--out", str(out))
    results = load_results(out)
    served = [s.finish_reason for s in results.samples if s.adapter == "runaway.gguf"]
    assert sum(r in ("new-turn", "max-tokens") for r in served) >= 0.8 * len(served)
    assert agreement(results, "broken-terminator", "runaway.gguf") >= 0.9


def test_pytest_plugin_takes_a_gguf_column(demo_adapter: Path, demo_gguf: Path, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "-q", "-m", "probes",
                           "--adapter", str(demo_adapter), "--adapter", str(demo_gguf), "--battery",
                           "uppercase-echo"], capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "uppercase-echo[demo.gguf-" in done.stdout and "uppercase-echo[demo-" in done.stdout
