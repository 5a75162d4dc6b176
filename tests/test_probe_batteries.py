"""The six built-in batteries load as data, hold the seeds' prompts verbatim, and bad battery files give one
located error each (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite.errors import EvalsuiteError
from evalsuite.probe.batteries import load_battery, resolve_batteries, slug

TEN = [
    "Explain quantum computing to a 10-year-old.",
    "Write a short poem about artificial intelligence.",
    "What are the main differences between Python and JavaScript?",
    "How does photosynthesis work?",
    "Continue the Fibonacci sequence: 1, 1, 2, 3, 5, 8,",
    "Describe the water cycle in simple terms.",
    "What is the capital of France and what is it famous for?",
    "Explain why the sky is blue.",
    "Write a haiku about programming.",
    "What are three tips for learning a new language?",
]
SEED_ECHO = ["hellow world", "how are youuuuu", "djgdlfkjg KDJFG 111 nn",
             "What are the most important things to know about the human body?"]
NO_SQUAD = ["uppercase-echo", "cyrillic", "runaway-turns", "template-leakage", "llama32-ten"]


def test_all_six_builtin_batteries_in_order() -> None:
    assert [p.stem for p in resolve_batteries([])] == [*NO_SQUAD[:4], "squad", "llama32-ten"]


def test_uppercase_echo_has_the_seed_prompts_and_held_out_strings() -> None:
    b = load_battery(resolve_batteries(["uppercase-echo"])[0])
    prompts = [c.prompt for c in b.cases]
    assert prompts[:4] == SEED_ECHO
    assert b.cases[0].id == "hellow-world" and b.cases[0].expected == "HELLOW WORLD"
    held = b.cases[4:]
    assert len(held) >= 50 and all(c.expected == c.prompt.upper() != c.prompt for c in held)
    train_file = Path(__file__).resolve().parents[1] / "fixtures/data/uppercase_echo_train.jsonl"
    train = {json.loads(line)["messages"][0]["content"] for line in train_file.read_text().splitlines()}
    assert not train & set(prompts)  # held out from the demo adapter's training data
    again = load_battery(resolve_batteries(["uppercase-echo"])[0])
    assert [c.prompt for c in again.cases] == prompts  # seeded: the same cases every run


def test_cyrillic_battery_expects_cyrillic_uppercase() -> None:
    b = load_battery(resolve_batteries(["cyrillic"])[0])
    by_prompt = {c.prompt: c for c in b.cases}
    assert by_prompt["привет"].expected == "ПРИВЕТ" and by_prompt["привет"].id == "privet"
    assert "Привет!! Как Делаааааа" in by_prompt
    assert any("hello" in c.prompt.lower() and "привет" in c.prompt for c in b.cases)  # mixed script
    assert any(len(c.prompt) > 40 for c in b.cases)
    assert b.scorer_name == "cyrillic_case"


def test_llama32_ten_prompts_are_verbatim_with_checkable_answers() -> None:
    b = load_battery(resolve_batteries(["llama32-ten"])[0])
    assert [c.prompt for c in b.cases] == TEN
    expected = {c.prompt: c.expected for c in b.cases if c.expected}
    assert expected == {TEN[4]: {"contains": ["13", "21"]}, TEN[6]: {"contains": ["Paris"]}}


def test_runaway_and_leakage_batteries_include_multi_turn_cases() -> None:
    for name in ("runaway-turns", "template-leakage"):
        b = load_battery(resolve_batteries([name])[0])
        assert any(len(c.messages) > 1 for c in b.cases)
        assert len({c.id for c in b.cases}) == len(b.cases)


def test_squad_battery_skips_cleanly_without_the_dataset(tmp_path: Path) -> None:
    from evalsuite.probe.sources import BatteryUnavailable

    with pytest.raises(BatteryUnavailable, match="SQuAD dev set not found"):
        load_battery(resolve_batteries(["squad"])[0], {"dataset": str(tmp_path / "missing.json")})


def test_ids_are_readable_slugs() -> None:
    assert slug("hellow world") == "hellow-world"
    assert slug("Привет!! Как Делаааааа") == "privet-kak-delaaaaaa"
    assert len(slug("word " * 40)) <= 40


def write(tmp: Path, text: str, name: str = "b.yaml") -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(("text", "message"), [
    ("scorer: exact_mtch\ncases: [hi]\n", "b.yaml:1: scorer: unknown scorer 'exact_mtch'; known scorers: "),
    ("scorer: exact_match\ncases:\n  - {id: a}\n", "b.yaml:3: cases[0]: a case needs exactly one of"),
    ("scorer: exact_match\ncases: [hi, hi]\n", "case id 'hi' appears twice"),
    ("scorer: exact_match\ncasez: [hi]\n", "b.yaml:2: casez: unknown key"),
    ("scorer: exact_match\ncases: []\n", "b.yaml:2: cases: the battery has no cases"),
    ("scorer: exact_match\nmax_new_tokens: 0\ncases: [hi]\n", "b.yaml:2: max_new_tokens: expected a positive"),
    ("scorer: {name: exact_match, args: {bad: 1}}\ncases: [hi]\n", "scorer 'exact_match': bad arguments"),
    ("scorer: exact_match\ngenerate: [{source: nope}]\ncases: [hi]\n", "unknown case source 'nope'"),
    ("scorer: exact_match\ncases:\n  - messages: [{role: user, content: a}, {role: assistant, content: b}]\n",
     "must end with a user message"),
    ("scorer: exact_match\ncases: [hi\n", "invalid YAML"),
])
def test_bad_battery_files_give_one_located_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(EvalsuiteError) as e:
        load_battery(write(tmp_path, text))
    assert message in str(e.value)
    assert str(tmp_path / "b.yaml") in str(e.value)


def test_cases_file_jsonl_and_user_metrics(tmp_path: Path) -> None:
    (tmp_path / "cases.jsonl").write_text('{"prompt": "a", "expected": "A"}\n{"prompt": "b", "expected": "B"}\n',
                                          encoding="utf-8")
    b = load_battery(write(tmp_path, "scorer: exact_match\ncases_file: cases.jsonl\n"
                                     "metrics: [{name: pct, source: passed, scale: 100}]\n", "mine.yaml"))
    assert b.name == "mine" and [c.expected for c in b.cases] == ["A", "B"] and b.metrics[0].name == "pct"
    (tmp_path / "cases.jsonl").write_text('{"prompt": "a"}\n{"promt": "b"}\n', encoding="utf-8")
    with pytest.raises(EvalsuiteError, match=r"cases.jsonl:2: promt: unknown case field"):
        load_battery(tmp_path / "mine.yaml")


def test_unknown_battery_name_lists_known(tmp_path: Path) -> None:
    with pytest.raises(EvalsuiteError, match="unknown battery 'nope'; known batteries: cyrillic, llama32-ten"):
        resolve_batteries(["nope"])
    p = write(tmp_path, "scorer: exact_match\ncases: [hi]\n", "custom.yaml")
    assert resolve_batteries([str(p)]) == [p]
    assert resolve_batteries(["custom"], [tmp_path]) == [p]
