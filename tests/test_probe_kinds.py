"""What can be probed, recognised without loading a model: PEFT folders, trainer output folders, merged models, hub
ids from the local cache; each column's provenance and cache key; and the bad inputs (one line, exit 2, nothing
written). The greedy outputs of each kind are compared with the run dir's in test_probe_kinds_real.py."""
# ruff: noqa: F811  (the fixtures imported from probe_kinds_support are requested by name)

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from probe_kinds_support import (  # noqa: F401  (the fixtures: what users have, made from the demo run dir)
    ADAPTER_ID,
    BASE_ID,
    hub_cache,
    kinds_root,
    merged_model,
    narrow_adapter,
    narrow_base,
    offline_hub,
    peft_folder,
    trainer_output,
)

from evalsuite.cli import main
from evalsuite.errors import EvalsuiteError
from evalsuite.probe.cache import base_fingerprint, column_key
from evalsuite.probe.targets import Target, build_targets

pytestmark = pytest.mark.slow  # the fixtures load the tiny base (and the demo adapter is trained once)


def _targets(*args: Path | str, base: bool = False, base_model: str | None = None) -> list[Target]:
    return build_targets([Path(a) for a in args], base, base_model, False)


def _key(t: Target) -> str:
    return column_key({**t.fingerprint("cpu", 0, base_fingerprint), "engine": "hf"})


def test_plain_peft_folder_is_an_external_adapter_on_its_declared_base(peft_folder: Path, tiny_base: Path) -> None:
    [t] = _targets(peft_folder)
    info, prov = t.info, t.info.provenance or {}
    assert (t.kind, info.source, info.external, info.manifest) == ("adapter", "peft", True, None)
    assert t.base_model == str(tiny_base.resolve()) and info.base_model == str(tiny_base.resolve())
    assert prov["base"]["from"] == "adapter_config.json"
    # peft saves no tokenizer or template: both, and the base's generation config, come from the base
    assert prov["tokenizer"] == {"from": "base", "file": str(tiny_base.resolve() / "tokenizer.json")}
    assert prov["template"]["from"] == "base" and prov["template"]["file"].endswith("tokenizer_config.json")
    assert str(tiny_base.resolve() / "generation_config.json") in prov["stops"]["from"]
    assert info.weights_sha256 == t.hashes["weights"] and len(info.weights_sha256 or "") == 64


def test_files_the_adapter_folder_carries_win_over_the_base(peft_folder: Path, demo_adapter: Path,
                                                            tmp_path: Path) -> None:
    own = shutil.copytree(peft_folder, tmp_path / "with-files")
    before = _key(_targets(own)[0])
    template = "{%- for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{%- endfor %}" \
               "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
    (own / "chat_template.jinja").write_text(template, encoding="utf-8")
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(demo_adapter / name, own / name)
    with pytest.warns(UserWarning, match="differs from the base model's own template"):
        [t] = _targets(own)
    prov = t.info.provenance or {}
    assert prov["template"]["from"] == "adapter" and prov["template"]["file"] == str(own / "chat_template.jinja")
    assert prov["tokenizer"]["from"] == "adapter"
    assert prov["stops"]["from"][0] == str(own / "generation_config.json")
    assert _key(t) != before  # another template is another cache column


def test_trainer_output_probes_the_newest_complete_checkpoint(trainer_output: Path) -> None:
    with pytest.warns(UserWarning, match=r"probing checkpoint-60, the newest complete checkpoint \(skipped: "
                                         r"checkpoint-120 \(no trainer_state.json"):
        [t] = _targets(trainer_output)
    assert t.name == "trainer-out-checkpoint-60" and t.path == trainer_output / "checkpoint-60"
    assert t.info.source == "checkpoint" and t.info.external
    assert (t.info.provenance or {})["checkpoint"] == {
        "name": "checkpoint-60", "output_dir": str(trainer_output),
        "skipped": ["checkpoint-120 (no trainer_state.json: stopped while saving)"]}


def test_merged_model_is_its_own_column_without_a_base(merged_model: Path, peft_folder: Path) -> None:
    targets = _targets(merged_model, peft_folder, base=True)
    assert [(t.name, t.kind) for t in targets] == [("merged", "merged"), ("base", "base"), ("peft-plain", "adapter")]
    merged = targets[0]
    assert merged.base_model == str(merged_model.resolve()) and merged.adapter_name is None
    assert merged.info.source == "merged" and merged.info.external and merged.info.weights_sha256
    assert (merged.info.provenance or {})["template"]["from"] == "model"
    assert [t.kind for t in _targets(merged_model, base=True)] == ["merged"]  # no base to add


def test_merged_weights_are_in_its_cache_key(merged_model: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(merged_model, tmp_path / "merged")
    before = _targets(copy)[0]
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(copy / "model.safetensors"))
    name = next(k for k in tensors if k.endswith("q_proj.weight"))
    tensors[name] = tensors[name] * 1.5
    save_file(tensors, str(copy / "model.safetensors"))
    after = _targets(copy)[0]
    assert after.info.weights_sha256 != before.info.weights_sha256 and _key(after) != _key(before)


def test_hub_ids_resolve_from_the_local_cache_only(offline_hub: Path) -> None:
    [t] = _targets(ADAPTER_ID)
    prov = t.info.provenance or {}
    assert t.name == "tiny-adapter" and t.info.source == "hub-adapter"
    assert t.path == offline_hub / "models--local--tiny-adapter" / "snapshots" / ("a" * 40)
    assert t.info.base_model == BASE_ID and t.base_model == str(offline_hub / "models--local--tiny-base" /
                                                                "snapshots" / ("b" * 40))
    assert prov["base"]["hub_id"] == BASE_ID and prov["base"]["revision"] == "b" * 40
    assert prov["hub_id"] == ADAPTER_ID and prov["tokenizer"]["from"] == "base"


def test_two_bases_are_grouped_each_with_its_base_column(peft_folder: Path, narrow_adapter: Path,
                                                         demo_adapter: Path, narrow_base: Path) -> None:
    targets = _targets(narrow_adapter, demo_adapter, peft_folder, base=True)
    assert [t.name for t in targets] == ["base-narrow-base", "narrow-adapter", "base-tiny-base", "demo", "peft-plain"]
    assert [t.base_model for t in targets[:2]] == [str(narrow_base.resolve())] * 2


# --- bad input: one line, exit 2, nothing written ---------------------------------------------------------------

def _probe_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> str:
    out = tmp_path / "results.json"
    rc = main(["probe", *args, "--out", str(out), "--no-cache"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert not out.exists()
    return err


def _with_config(src: Path, dst: Path, **changes: object) -> Path:
    folder = shutil.copytree(src, dst)
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    config.update(changes)
    (folder / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_missing_base_is_one_error(capsys: pytest.CaptureFixture[str], peft_folder: Path, tmp_path: Path) -> None:
    none = _with_config(peft_folder, tmp_path / "no-base", base_model_name_or_path=None)
    err = _probe_fails(capsys, tmp_path, str(none))
    assert f"{none / 'adapter_config.json'}: base_model_name_or_path: missing; pass --base-model" in err
    gone = _with_config(peft_folder, tmp_path / "gone-base", base_model_name_or_path=str(tmp_path / "nowhere"))
    err = _probe_fails(capsys, tmp_path, str(gone))
    assert f"base model {tmp_path / 'nowhere'} (from adapter_config.json): no such folder" in err


def test_base_id_in_neither_path_nor_cache_names_the_id(capsys: pytest.CaptureFixture[str], peft_folder: Path,
                                                        tmp_path: Path, offline_hub: Path) -> None:
    absent = _with_config(peft_folder, tmp_path / "absent", base_model_name_or_path="nobody/absent-model")
    err = _probe_fails(capsys, tmp_path, str(absent))
    assert "base model 'nobody/absent-model' (from adapter_config.json) is not a folder and not in the local " \
           f"Hugging Face cache ({offline_hub})" in err
    err = _probe_fails(capsys, tmp_path, "nobody/absent-adapter")
    assert "no hub model 'nobody/absent-adapter' in the local Hugging Face cache" in err


def test_adapter_that_does_not_fit_the_base_names_both(capsys: pytest.CaptureFixture[str], narrow_adapter: Path,
                                                       tiny_base: Path, tmp_path: Path) -> None:
    err = _probe_fails(capsys, tmp_path, str(narrow_adapter), "--base-model", str(tiny_base))
    assert f"{narrow_adapter}: adapter does not fit the base model {tiny_base.resolve()}" in err
    assert "size mismatch for base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight: shape [4, 64]" in err


def test_pickle_weights_need_allow_pickle(capsys: pytest.CaptureFixture[str], peft_folder: Path,
                                          merged_model: Path, tmp_path: Path) -> None:
    pickled = shutil.copytree(peft_folder, tmp_path / "pickled")
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    err = _probe_fails(capsys, tmp_path, str(pickled))
    assert f"{pickled}: adapter weights are a pickle (adapter_model.bin)" in err and "--allow-pickle" in err
    merged = tmp_path / "merged-bin"
    merged.mkdir()
    shutil.copy(merged_model / "config.json", merged / "config.json")
    (merged / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    err = _probe_fails(capsys, tmp_path, str(merged))
    assert f"{merged}: model weights are pickles (*.bin)" in err and "--allow-pickle" in err


def test_manifest_and_adapter_config_disagreeing_about_the_base(capsys: pytest.CaptureFixture[str],
                                                                demo_adapter: Path, tmp_path: Path) -> None:
    run = _with_config(demo_adapter, tmp_path / "run", base_model_name_or_path="Qwen/Qwen2.5-0.5B-Instruct")
    manifest_base = json.loads((run / "evalsuite_manifest.json").read_text(encoding="utf-8"))["base_model"]
    err = _probe_fails(capsys, tmp_path, str(run))
    assert f"evalsuite_manifest.json says the base model is {manifest_base}, but its adapter_config.json says " \
           "Qwen/Qwen2.5-0.5B-Instruct" in err


def test_folders_with_nothing_to_probe(capsys: pytest.CaptureFixture[str], peft_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    err = _probe_fails(capsys, tmp_path, str(tmp_path / "empty"))
    assert "nothing to probe: no evalsuite_manifest.json, adapter_config.json, config.json or checkpoint-N/" in err
    stopped = tmp_path / "stopped"
    shutil.copytree(peft_folder, stopped / "checkpoint-10")
    err = _probe_fails(capsys, tmp_path, str(stopped))
    assert "no complete checkpoint: checkpoint-10 (no trainer_state.json: stopped while saving)" in err
    bare = shutil.copytree(peft_folder, tmp_path / "bare")
    (bare / "adapter_config.json").unlink()
    err = _probe_fails(capsys, tmp_path, str(bare))
    assert "missing adapter_config.json" in err


def test_the_same_folder_twice_is_an_error(peft_folder: Path) -> None:
    with pytest.raises(EvalsuiteError, match="the same run dir is given twice"):
        _targets(peft_folder, peft_folder)
