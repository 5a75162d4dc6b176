"""Bad input to `evalsuite probe`: one clear error each, exit 2, no traceback, nothing of the user's overwritten."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import call_main, run_cli


def probe(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = call_main(["probe", *args])
    return rc, capsys.readouterr().err


def copy_run(src: Path, tmp: Path, name: str = "run") -> Path:
    dst = tmp / name
    shutil.copytree(src, dst)
    return dst


def test_missing_run_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, err = probe(capsys, str(tmp_path / "nope"))
    assert rc == 2 and err.strip() == f"error: {tmp_path / 'nope'}: no such run dir, adapter or model folder"


def test_empty_dir_is_an_incomplete_run_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, err = probe(capsys, str(tmp_path))
    assert rc == 2 and "nothing to probe" in err and "missing adapter_model.safetensors: incomplete run dir?" in err


@pytest.mark.slow
def test_corrupt_run_dir_files(capsys: pytest.CaptureFixture[str], demo_adapter: Path, tmp_path: Path) -> None:
    run = copy_run(demo_adapter, tmp_path)
    weights = run / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    rc, err = probe(capsys, str(run))
    assert rc == 2 and f"{weights}: corrupt adapter weights (tensor data truncated)" in err
    weights.write_bytes(b"not a safetensors file")
    rc, err = probe(capsys, str(run))
    assert rc == 2 and "corrupt adapter weights" in err
    weights.write_bytes(data)
    config = (run / "adapter_config.json").read_text(encoding="utf-8")
    (run / "adapter_config.json").write_text("{not json", encoding="utf-8")
    rc, err = probe(capsys, str(run))
    assert rc == 2 and "adapter_config.json:1: invalid JSON" in err
    (run / "adapter_config.json").write_text(config, encoding="utf-8")
    (run / "evalsuite_manifest.json").write_text("{}", encoding="utf-8")
    rc, err = probe(capsys, str(run))
    assert rc == 2 and "evalsuite_manifest.json: invalid manifest: schema_version: expected int" in err


@pytest.mark.slow
def test_pickle_weights_are_refused_unless_allowed(capsys: pytest.CaptureFixture[str], demo_adapter: Path,
                                                   tmp_path: Path) -> None:
    run = copy_run(demo_adapter, tmp_path)
    (run / "adapter_model.safetensors").rename(run / "adapter_model.bin")
    rc, err = probe(capsys, str(run))
    assert rc == 2 and "pickle" in err and "--allow-pickle" in err


@pytest.mark.slow
def test_adapter_for_another_base_is_one_error_naming_adapter_and_base(capsys: pytest.CaptureFixture[str],
                                                                       demo_adapter: Path, tiny_base: Path,
                                                                       tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    run = copy_run(demo_adapter, tmp_path, "other-base-run")
    tensors = load_file(str(run / "adapter_model.safetensors"))
    # the same adapter layout for a model half as wide: what an adapter trained on another base looks like
    reshaped = {k: (v[:, : v.shape[1] // 2].contiguous() if "lora_A" in k else v) for k, v in tensors.items()}
    save_file(reshaped, str(run / "adapter_model.safetensors"))
    battery = tmp_path / "one.yaml"
    battery.write_text("scorer: exact_match\nexpect: upper\ncases: [hello]\n", encoding="utf-8")
    out = tmp_path / "results.json"
    kept = '{"schema_version": 2, "keep": "me"}\n'  # a results file (any other file is refused as --out up front)
    out.write_text(kept, encoding="utf-8")
    proc = run_cli("probe", run, "--battery", battery, "--out", out, "--no-cache", timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert str(run) in lines[0] and "does not fit the base model" in lines[0] and str(tiny_base.resolve()) in lines[0]
    assert "size mismatch" in lines[0]
    assert out.read_text(encoding="utf-8") == kept  # nothing of the user's overwritten


@pytest.mark.slow
def test_manifest_naming_another_base_than_adapter_config(capsys: pytest.CaptureFixture[str], demo_adapter: Path,
                                                         tmp_path: Path) -> None:
    other = copy_run(demo_adapter, tmp_path, "other")
    manifest = json.loads((other / "evalsuite_manifest.json").read_text(encoding="utf-8"))
    manifest["base_model"] = "Qwen/Qwen2.5-0.5B-Instruct"
    (other / "evalsuite_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    rc, err = probe(capsys, str(demo_adapter), str(other))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "evalsuite_manifest.json says the base model is Qwen/Qwen2.5-0.5B-Instruct, but its adapter_config.json " \
           "says " in err and "tiny-base" in err


@pytest.mark.slow
def test_battery_with_unknown_scorer_lists_known_scorers(capsys: pytest.CaptureFixture[str], demo_adapter: Path,
                                                         tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nscorer: exact_mtch\ncases: [hi]\n", encoding="utf-8")
    rc, err = probe(capsys, str(demo_adapter), "--battery", str(bad))
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}:2: scorer: unknown scorer 'exact_mtch'; "
                                                    "known scorers: contains, cyrillic_case, exact_match, ")
    for name in ("no_leakage", "open_ended", "squad", "stops"):
        assert name in lines[0]
    rc, err = probe(capsys, str(demo_adapter), "--battery", "no-such-battery")
    assert rc == 2 and "unknown battery 'no-such-battery'; known batteries:" in err


def test_pickle_base_weights_refused_and_remote_code_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    from evalsuite.errors import EvalsuiteError
    from evalsuite.probe.engines.hf import _load_base

    base = tmp_path / "base"
    base.mkdir()
    (base / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(EvalsuiteError, match=r"pickles \(\*\.bin\).*--allow-pickle"):
        _load_base(str(base), None, allow_pickle=False, trust_remote_code=False)
    seen: dict[str, object] = {}
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: seen.update(k) or "model")
    assert _load_base(str(base), None, allow_pickle=True, trust_remote_code=False) == "model"
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is None
    (base / "model.safetensors").write_bytes(b"")
    _load_base(str(base), None, allow_pickle=False, trust_remote_code=False)
    assert seen["use_safetensors"] is True
