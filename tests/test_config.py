"""Config parsing: the seeds' axolotl configs load; bad configs give one file:line:key error and exit 2."""

from __future__ import annotations

import dataclasses
import re
import textwrap
import typing
import warnings
from pathlib import Path
from typing import Any, Literal

import pytest
from cli_helpers import call_main, run_cli

from evalsuite.config.fields import FIELDS, F, check_value
from evalsuite.config.load import Config, ConfigWarning, load_config
from evalsuite.config.rows import load_samples
from evalsuite.errors import EvalsuiteError

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


# --- the typed Config -------------------------------------------------------------------------------------------

NOT_KEYS = ("path", "datasets", "lines", "ignored")  # what parsing records besides the keys' values
KIND_TYPES: dict[str, Any] = {"str": str, "posint": int, "nonnegint": int, "posfloat": float, "nonnegfloat": float,
                              "fraction": float, "bool": bool, "bool_auto": bool | Literal["auto"],
                              "str_list": list[str], "str_map": dict[str, str], "any": object}


def test_config_declares_exactly_the_fields_table_with_its_defaults_and_types() -> None:
    keys = [f for f in dataclasses.fields(Config) if f.name not in NOT_KEYS]
    assert [f.name for f in keys] == list(FIELDS)  # same keys, same order as the README table
    hints = typing.get_type_hints(Config)
    for f in keys:
        spec = FIELDS[f.name]
        if f.name == "base_model":  # the one required key: no default, never None
            assert f.default is dataclasses.MISSING and hints[f.name] is str
            continue
        assert f.default == spec.default and type(f.default) is type(spec.default), f.name
        expected = Literal[spec.choices] if spec.kind == "enum" else KIND_TYPES[spec.kind]
        if spec.default is None and spec.kind != "any":
            expected = expected | None
        assert hints[f.name] == expected, f.name


def test_config_is_never_changed_in_place_and_replace_makes_an_edited_copy(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("base_model: m\nmax_steps: 5\n")
    config = load_config(p)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_steps = 3  # type: ignore[misc]
    edited = dataclasses.replace(config, max_steps=3)
    assert (config.max_steps, edited.max_steps) == (5, 3) and edited.where("max_steps") == f"{p}:2"


@pytest.mark.parametrize(("body", "four_bit"), [
    ("adapter: qlora", True),  # implied, as axolotl does
    ("adapter: qlora\nload_in_8bit: true", False),
    ("adapter: lora", False),
])
def test_qlora_implies_4bit_when_the_config_is_built(tmp_path: Path, body: str, four_bit: bool) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(f"base_model: m\n{body}\n")
    config = load_config(p)
    assert config.load_in_4bit is four_bit and config.adapter_kind == ("qlora" if "qlora" in body else "lora")


@pytest.mark.parametrize(("kind", "good", "value", "bad", "expected"), [
    ("str", 7, "7", True, "a string"),
    ("bool", False, False, "no", "true or false"),
    ("bool_auto", "auto", "auto", 1, "true, false or auto"),
    ("posint", 3, 3, 0, "a positive integer"),
    ("nonnegint", 0, 0, -1, "a non-negative integer"),
    ("posfloat", "2e-4", 2e-4, 0, "a positive number"),
    ("nonnegfloat", 0, 0.0, -0.5, "a non-negative number"),
    ("fraction", 0.5, 0.5, 1, "a number in [0, 1)"),
    ("enum", "b", "b", "c", "one of a, b"),
    ("str_list", "q_proj", ["q_proj"], [1], "a list of strings"),
    ("str_map", {"pad": "x"}, {"pad": "x"}, {"pad": 1}, "a mapping of names to strings"),
])
def test_each_field_kind_converts_good_values_and_names_what_it_expected(kind: str, good: Any, value: Any, bad: Any,
                                                                          expected: str) -> None:
    spec = F(kind, "the default", "doc", ("a", "b"))
    where = "c.yaml:3: key: {}".format
    assert check_value(spec, None, where) == "the default"
    got = check_value(spec, good, where)
    assert got == value and type(got) is type(value)
    with pytest.raises(EvalsuiteError, match="^" + re.escape(f"c.yaml:3: key: expected {expected}, got")):
        check_value(spec, bad, where)


def test_mypy_sees_each_config_attribute_type(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "uses_config.py"
    snippet.write_text(textwrap.dedent("""\
        from evalsuite.config.load import load_config
        config = load_config("c.yaml")
        reveal_type(config.max_steps)
        reveal_type(config.bf16)
        reveal_type(config.lora_target_modules)
        config.lora_rank
        config.max_steps = 3
        """))
    out, _err, code = api.run([str(snippet), "--cache-dir", str(tmp_path / "cache"), "--no-error-summary"])
    assert code == 1, out
    assert 'Revealed type is "int | None"' in out and """Revealed type is "bool | Literal['auto']\"""" in out
    assert 'Revealed type is "list[str] | None"' in out
    assert '"Config" has no attribute "lora_rank"' in out and '"max_steps" defined in "Config" is read-only' in out
