"""Config parsing: the seeds' axolotl configs load; bad configs give one file:line:key error and exit 2."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import pytest
from cli_helpers import call_main, run_cli

from evalsuite.config.load import ConfigWarning, load_config
from evalsuite.config.rows import load_samples

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "tests" / "configs"


def test_phi3_squad_config_parses_with_custom_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_config(CONFIGS / "phi3_squad_qlora.yaml")
    assert cfg.adapter_kind == "qlora" and cfg.load_in_4bit and cfg.lora_r == 64
    assert cfg.learning_rate == pytest.approx(3e-6) and cfg.adam_epsilon == pytest.approx(1e-5)
    assert cfg.special_tokens == {"pad_token": "<|endoftext|>"}
    assert cfg.train_on_inputs is False and cfg.bf16 == "auto" and cfg.fp16 is False
    custom = cfg.datasets[0].custom
    assert custom is not None and custom.field_input == "context"
    # unknown keys warn with their line; axolotl-only keys are listed once
    messages = [str(w.message) for w in caught if issubclass(w.category, ConfigWarning)]
    assert any("phi3_squad_qlora.yaml:72: resize_token_embeddings_to_32x: unknown key" in m for m in messages)
    assert any("accepted but not used" in m and "val_set_size" in m for m in messages)
    samples = load_samples(cfg.datasets[0])
    assert samples[0].prompt is not None and "Read the following context" in samples[0].prompt
    assert samples[0].completion == "27.3 days"
    # no input -> no_input_format
    assert samples[2].prompt is not None and "{input}" not in samples[2].prompt and samples[2].completion == "water"


def test_gemma2_config_parses_sharegpt_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        cfg = load_config(CONFIGS / "gemma2_qlora.yaml")
    assert cfg.sample_packing and cfg.optimizer == "adamw_bnb_8bit" and cfg.warmup_ratio == pytest.approx(0.1)
    assert cfg.gradient_accumulation_steps == 4 and cfg.chat_template == "gemma"
    samples = load_samples(cfg.datasets[0])
    first = samples[0].messages
    assert first is not None and [m["role"] for m in first] == ["user", "assistant"]  # system dropped
    second = samples[1].messages
    assert second is not None and second[3]["content"] == "OK 👍"


def test_sequence_length_alias(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("base_model: m\nsequence_length: 512\n")
    assert load_config(p).sequence_len == 512


BAD = [
    ("lora_r: sixty-four", 'c.yaml:3: lora_r: expected a positive integer, got "sixty-four"'),
    ("learning_rate: fast", 'c.yaml:3: learning_rate: expected a positive number, got "fast"'),
    ("optimizer: adamw_magic", "c.yaml:3: optimizer: expected one of adamw_torch"),
    ("adapter: dora", "c.yaml:3: adapter: expected one of lora, qlora"),
    ("load_in_4bit: yes-please", 'c.yaml:3: load_in_4bit: expected true or false, got "yes-please"'),
    ("sequence_len: -5", "c.yaml:3: sequence_len: expected a positive integer, got -5"),
    ("lora_dropout: 1.5", "c.yaml:3: lora_dropout: expected a number in [0, 1), got 1.5"),
    ("lora_target_modules: 7", "c.yaml:3: lora_target_modules: expected a list of strings, got 7"),
    ("special_tokens: [a, b]", "c.yaml:3: special_tokens: expected a mapping of names to strings"),
    ("load_in_4bit: true\nload_in_8bit: true", "c.yaml:4: load_in_8bit: cannot be true together with load_in_4bit"),
    ("bf16: maybe", 'c.yaml:3: bf16: expected true, false or auto, got "maybe"'),
    ("sequence_len: 10\nsequence_length: 20", "c.yaml:4: sequence_length: given together with sequence_len"),
]
BAD_DATASETS = [
    ("datasets: data.jsonl", "c.yaml:2: datasets: expected a list"),
    ("datasets:\n  - type: alpaca", "c.yaml:3: datasets[0].path: required"),
    ("datasets:\n  - path: d.jsonl\n    type: alpaca_chat.load_qa", "c.yaml:4: datasets[0].type: expected one of"),
    ("datasets:\n  - path: d.jsonl\n    type:\n      format: '{instruction}'\n      field_answer: a",
     "c.yaml:6: datasets[0].type.field_answer: unknown custom-format key"),
    ("datasets:\n  - path: d.jsonl\n    type:\n      field_instruction: q",
     "c.yaml:4: datasets[0].type.format: required for a custom format"),
    ("datasets:\n  - path: d.jsonl\n    shuffle: yes", "c.yaml:4: datasets[0].shuffle: unknown dataset key"),
]


@pytest.mark.parametrize(("body", "expected"), BAD + BAD_DATASETS, ids=lambda v: str(v).split(":")[0][:24])
def test_bad_config_names_file_line_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str,
                                        expected: str) -> None:
    lead = "base_model: m\n" if body.startswith("datasets") else "base_model: m\ndatasets: []\n"
    p = tmp_path / "c.yaml"
    p.write_text(lead + body + "\n")
    code = call_main(["train", str(p)])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("base_model: m\nlora_r: [1,\n", "c.yaml:3: invalid YAML"),
    ("- just\n- a list\n", "expected a mapping of keys"),
    ("lora_r: 8\n", "base_model: required"),
])
def test_unparseable_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    assert call_main(["train", str(p)]) == 2
    assert expected in capsys.readouterr().err


def test_bad_config_from_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    p = tmp_path / "config.yaml"
    p.write_text(textwrap.dedent("""\
        base_model: m
        datasets: []
        lora_r: sixty-four
        """))
    proc = run_cli("train", p)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f'error: {p}:3: lora_r: expected a positive integer, got "sixty-four"'


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert call_main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such file" in capsys.readouterr().err
