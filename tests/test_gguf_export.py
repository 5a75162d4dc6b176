"""`evalsuite export` and the static drift checks on a real conversion of a trained tiny adapter.

The GGUF comes from llama.cpp's own converter (see gguf_support for where it is found); the broken variants are made
from it by gguf-py's gguf_new_metadata.py, each breaking one thing the seeds and llama.cpp's issues met. Each must be
flagged by its rule id with exit 1; the clean export must have no finding at all.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from gguf_support import evalsuite, new_metadata

pytestmark = pytest.mark.slow

OTHER_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                  "{% if add_generation_prompt %}assistant: {% endif %}")
BROKEN = {
    # eos set to a token that is not the end of turn (the Llama-3 <|end_of_text|> case, ollama issue 3759)
    "eos": (("--special-token", "eos", "<|endoftext|>"), "gguf-eos-mismatch"),
    "no-template": (("--remove-metadata", "tokenizer.chat_template"), "gguf-template-missing"),
    "other-template": (("--chat-template", OTHER_TEMPLATE), "gguf-template-differs"),
    # add_bos left to llama.cpp's default (true for this vocabulary type) with a BOS the template already writes
    "double-bos": (("--special-token", "bos", "<|im_start|>", "--remove-metadata", "tokenizer.ggml.add_bos_token"),
                   "gguf-double-bos"),
}


def drift_json(source: Path, gguf: Path, *extra: str) -> tuple[int, dict]:
    done = evalsuite("drift", str(source), str(gguf), "--format", "json", "--battery", "uppercase-echo",
                     "--battery", "runaway-turns", *extra)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_exported_gguf_has_no_static_finding(demo_adapter: Path, demo_gguf: Path) -> None:
    code, report = drift_json(demo_adapter, demo_gguf, "--static-only")
    assert report["findings"] == [] and code == 0 and report["exit_code"] == 0


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_broken_gguf_is_flagged_by_its_rule(name: str, demo_adapter: Path, demo_gguf: Path, llama_cpp: Path,
                                                  tmp_path: Path) -> None:
    args, rule = BROKEN[name]
    broken = new_metadata(llama_cpp, demo_gguf, tmp_path / f"{name}.gguf", *args)
    code, report = drift_json(demo_adapter, broken, "--static-only")
    rules = {f["rule"] for f in report["findings"] if f["severity"] == "error"}
    assert code == 1 and rules == {rule}, report["findings"]
    message = report["findings"][0]["message"]
    assert "gguf_new_metadata" in message or "tokenizer_config" in message  # each message says how to fix it


def test_text_report_names_the_rule_and_the_difference(demo_adapter: Path, demo_gguf: Path, llama_cpp: Path,
                                                       tmp_path: Path) -> None:
    broken = new_metadata(llama_cpp, demo_gguf, tmp_path / "t.gguf", "--chat-template", OTHER_TEMPLATE)
    done = evalsuite("drift", str(demo_adapter), str(broken), "--static-only", "--battery", "uppercase-echo")
    assert done.returncode == 1
    assert "error gguf-template-differs" in done.stdout
    assert "'<|im_start|>user\\nhellow " in done.stdout and "'user: hellow world" in done.stdout


def test_plain_converter_output_drifts_and_export_fixes_it(demo_adapter: Path, llama_cpp: Path,
                                                           tmp_path: Path) -> None:
    """The merged folder converted without export's staging: the padded embedding and the SentencePiece spaces."""
    from evalsuite.export.llamacpp import convert

    merged = tmp_path / "merged"
    done = evalsuite("export", str(demo_adapter), "--merged", str(merged))
    assert done.returncode == 0, done.stderr
    plain = tmp_path / "plain.gguf"
    convert(llama_cpp / "convert_hf_to_gguf.py", merged, plain, "f32")
    code, report = drift_json(demo_adapter, plain, "--static-only")
    rules = {f["rule"] for f in report["findings"]}
    assert code == 1 and {"gguf-tokenization-differs", "gguf-vocab-mismatch"} <= rules, report["findings"]
    vocab = next(f["message"] for f in report["findings"] if f["rule"] == "gguf-vocab-mismatch")
    assert "421 tokens" in vocab and "448" in vocab
    probe = evalsuite("probe", str(plain), "--battery", "uppercase-echo")  # llama.cpp itself refuses the weights
    # One error line; the runner's progress line ("generating N prompt(s)...") comes before it, as the weights are
    # loaded when generation starts.
    errors = [line for line in probe.stderr.splitlines() if line.startswith("error:")]
    assert probe.returncode == 2 and len(errors) == 1 and "token_embd.weight" in errors[0], probe.stderr
    assert "Traceback" not in probe.stderr


def test_merged_folder_is_complete_and_equals_the_adapter(demo_adapter: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    # a run dir whose tokenizer_config.json still carries a template (the base's, as tokenizers save it): export
    # must leave the key out, or llama.cpp's converter would embed it instead of chat_template.jinja
    source = tmp_path / "run"
    shutil.copytree(demo_adapter, source)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["chat_template"] = OTHER_TEMPLATE
    (source / "tokenizer_config.json").write_text(json.dumps(config))
    merged = tmp_path / "merged"
    done = evalsuite("export", str(source), "--merged", str(merged))
    assert done.returncode == 0, done.stderr
    names = {p.name for p in merged.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
            "generation_config.json", "evalsuite_export.json"} <= names
    assert (merged / "chat_template.jinja").read_text() == (demo_adapter / "chat_template.jinja").read_text()
    written = json.loads((merged / "tokenizer_config.json").read_text())
    assert "chat_template" not in written and written == {k: v for k, v in config.items() if k != "chat_template"}
    gen = json.loads((merged / "generation_config.json").read_text())
    assert gen["eos_token_id"] == json.loads((demo_adapter / "generation_config.json").read_text())["eos_token_id"]
    manifest = json.loads((demo_adapter / "evalsuite_manifest.json").read_text())
    ids = torch.tensor([[1, 89, 87, 73, 86, 3, 76, 73, 80, 80, 83, 2, 3, 1, 69]])
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(manifest["base_model"])
        plain = base(ids).logits  # before peft injects the LoRA layers into `base` itself
        want = PeftModel.from_pretrained(base, str(demo_adapter))(ids).logits
        got = AutoModelForCausalLM.from_pretrained(merged)(ids).logits
    assert torch.allclose(want, got, atol=1e-4), (want - got).abs().max()
    assert not torch.allclose(plain, got, atol=1e-3)  # the adapter really changed the weights


def test_export_writes_nothing_when_the_converter_fails(demo_adapter: Path, llama_cpp: Path,
                                                        tmp_path: Path) -> None:
    broken = tmp_path / "llama.cpp"
    shutil.copytree(llama_cpp, broken)
    (broken / "convert_hf_to_gguf.py").write_text("import sys\nsys.exit('error: simulated converter failure')\n")
    out = tmp_path / "m.gguf"
    done = evalsuite("export", str(demo_adapter), "--gguf", str(out), "--llama-cpp", str(broken))
    assert done.returncode == 2 and "simulated converter failure" in done.stderr
    assert not out.exists() and not list(tmp_path.glob(".m.gguf*"))
