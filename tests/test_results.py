"""The results schema: round trip, validation messages, atomic writes, metric rows."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

from evalsuite.errors import EvalsuiteError
from evalsuite.results.aggregate import MetricSpec, compute_metrics, spec_of
from evalsuite.results.io import load_results, results_from_dict, write_results
from evalsuite.results.schema import Results

DATA = Path(__file__).parent / "data" / "results"


def _factory() -> Any:
    spec = importlib.util.spec_from_file_location("results_factory", DATA / "factory.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


factory = _factory()


def _good_dict() -> dict[str, Any]:
    return json.loads((DATA / "good.json").read_text())


def test_committed_files_load_and_match_the_factory() -> None:
    for name, (spec, seed) in factory.FILES.items():
        loaded = load_results(DATA / name)
        assert loaded.to_dict() == factory.make_results(spec, seed).to_dict(), name


def test_round_trip(tmp_path: Path) -> None:
    res = load_results(DATA / "three.json")
    write_results(res, tmp_path / "out.json")
    again = load_results(tmp_path / "out.json")
    assert again.to_dict() == res.to_dict()
    assert again.engine.settings == {"do_sample": False, "batch_size": 8}
    assert [a.name for a in again.adapters] == ["base", "r4", "r8"]
    assert again.gated_adapters() == ["r4", "r8"]
    assert again.batteries() == ["uppercase-echo", "runaway-turns", "squad", "llama32-ten"]


def test_version_1_files_load_and_version_2_columns_carry_provenance(tmp_path: Path) -> None:
    old = _good_dict()
    assert old["schema_version"] == 1 and "provenance" not in old["adapters"][0]
    res = results_from_dict(old, "old.json")
    assert all(a.source is None and a.external is False and a.provenance is None for a in res.adapters)
    res.adapters[-1].kind, res.adapters[-1].source, res.adapters[-1].external = "merged", "merged", True
    res.adapters[-1].provenance = {"base": {"name": "/m", "from": "itself (merged model)"}}
    write_results(res, tmp_path / "new.json")
    data = json.loads((tmp_path / "new.json").read_text())
    assert data["schema_version"] == 3 and data["adapters"][-1]["external"] is True
    again = load_results(tmp_path / "new.json")
    assert again.adapters[-1].provenance == {"base": {"name": "/m", "from": "itself (merged model)"}}
    assert again.adapters[-1].kind == "merged" and res.adapters[-1].name in again.gated_adapters()


def _expect_error(data: Any, fragment: str) -> None:
    with pytest.raises(EvalsuiteError) as info:
        results_from_dict(data, "results.json")
    assert str(info.value).startswith("results.json: ")
    assert fragment in str(info.value), str(info.value)


def test_finish_reason_error_names_file_and_field() -> None:
    data = _good_dict()
    data["samples"][12]["finish_reason"] = "foo"
    _expect_error(data, 'samples[12].finish_reason: expected one of eos, stop-string, max-tokens, '
                        'new-turn, not-run, got "foo"')


@pytest.mark.parametrize(("mutate", "fragment"), [
    (lambda d: d.pop("engine"), "results.json: engine: missing"),
    (lambda d: d.update(schema_version=4), "schema_version: expected 1 or 2 or 3, got 4 (written by a newer"),
    (lambda d: d["adapters"][0].update(external="no"), 'adapters[0].external: expected true or false, got "no"'),
    (lambda d: d["adapters"][0].update(provenance=[]), "adapters[0].provenance: expected an object, got []"),
    (lambda d: d["samples"][0].update(passed="yes"), 'samples[0].passed: expected true or false, got "yes"'),
    (lambda d: d["samples"][3].update(tokens=-1), "samples[3].tokens: expected an integer >= 0"),
    (lambda d: d["samples"][1].update(adapter="ghost"), 'samples[1].adapter: "ghost" is not in adapters'),
    (lambda d: d["samples"][2].pop("scorer"), "samples[2].scorer: missing"),
    (lambda d: d["metrics"][0].update(value=float("nan")), "metrics[0].value: expected a finite number"),
    (lambda d: d["metrics"][0].update(method="magic"), "metrics[0].method: expected one of wilson"),
    (lambda d: d["metrics"][0].update(ci_low=None), "metrics[0]: ci_low and ci_high must both"),
    (lambda d: d["adapters"][1].update(kind="lora"), "adapters[1].kind: expected one of adapter, merged, base"),
    (lambda d: d["adapters"].append(dict(d["adapters"][0])), 'adapters[2]: duplicate name "base"'),
    (lambda d: d["samples"].append(dict(d["samples"][0])), "duplicate (battery, case, adapter)"),
    (lambda d: d["engine"].update(max_new_tokens=0), "engine.max_new_tokens: expected an integer >= 1"),
])
def test_validation_errors(mutate: Any, fragment: str) -> None:
    data = _good_dict()
    mutate(data)
    _expect_error(data, fragment)


def test_top_level_not_an_object() -> None:
    _expect_error([], "expected an object, got []")


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{\n  "schema_version": 1,\n  oops\n}')
    with pytest.raises(EvalsuiteError, match=r"broken\.json:3: invalid JSON"):
        load_results(bad)
    with pytest.raises(EvalsuiteError, match=r"missing\.json: no such results file"):
        load_results(tmp_path / "missing.json")


def test_write_is_atomic_and_leaves_old_file_on_failure(tmp_path: Path, monkeypatch: Any) -> None:
    target = tmp_path / "results.json"
    res = load_results(DATA / "good.json")
    write_results(res, target)
    before = target.read_bytes()
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode

    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_results(load_results(DATA / "bad.json"), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # temp file cleaned up


def test_write_refuses_invalid_results(tmp_path: Path) -> None:
    res = load_results(DATA / "good.json")
    res.samples[0].finish_reason = "timeout"
    with pytest.raises(EvalsuiteError, match="finish_reason"):
        write_results(res, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def _by_name(rows: list[Any], battery: str, adapter: str) -> dict[str, Any]:
    return {m.name: m for m in rows if m.battery == battery and m.adapter == adapter}


def test_metric_rows_per_battery() -> None:
    res: Results = load_results(DATA / "bad.json")
    rows = compute_metrics(res.samples)
    run = _by_name(rows, "runaway-turns", "bad")
    samples = res.samples_for("runaway-turns", "bad")
    passed = sum(s.passed for s in samples)
    assert run["accuracy"].value == passed / len(samples)
    assert run["rate"].value == pytest.approx(1 - run["accuracy"].value)
    assert run["rate"].method == "wilson" and run["rate"].higher_is_better is False
    assert run["rate"].ci_low <= run["rate"].value <= run["rate"].ci_high
    squad = _by_name(rows, "squad", "bad")
    sq = res.samples_for("squad", "bad")
    assert squad["exact_match"].value == pytest.approx(100 * sum(s.passed for s in sq) / len(sq))
    assert squad["f1"].value == pytest.approx(100 * sum(s.score for s in sq) / len(sq))
    assert squad["f1"].method == "bootstrap" and squad["f1"].ci_high <= 100.0
    assert set(_by_name(rows, "uppercase-echo", "bad")) == {"accuracy", "char_accuracy"}
    assert set(_by_name(rows, "llama32-ten", "bad")) == {"accuracy"}


def test_user_declared_metric_and_spec_fallback() -> None:
    res = load_results(DATA / "good.json")
    extra = {"llama32-ten": [MetricSpec("mean_score", "score", 10.0)]}
    rows = _by_name(compute_metrics(res.samples, extra), "llama32-ten", "good")
    assert rows["mean_score"].scale == 10.0 and rows["mean_score"].source == "score"
    row = rows["accuracy"]
    row.source = None  # an older row without provenance falls back to the built-in table
    spec = spec_of(row)
    assert spec is not None and spec.source == "passed"
    with pytest.raises(ValueError, match="twice"):
        compute_metrics(res.samples, {"squad": [MetricSpec("f1", "score")]})
