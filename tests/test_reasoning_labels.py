"""Reasoning and weights in the labels: the encoder gives an answer's reasoning block its own segment (role
``reasoning``), trained unless ``train_on_reasoning: false``; OpenAI's ``weight: 0`` turns are context; the lint's
label view counts the same tokens the trainer's labels train. On real templates with stand-in tokenizers carrying
each model's control tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lint_support import fixture, lint_standin, rules, standin_dir

from evalsuite.chat.encode import EncodeOptions, encode_sample
from evalsuite.chat.tokenizer import load_tokenizer
from evalsuite.config.rows import Sample

ANSWER = "Paris is the capital."
REASONING = "The user asks for a capital. France's is Paris."


@pytest.fixture(scope="module")
def qwq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    fixture("templates/Qwen-QwQ-32B.jinja")
    return standin_dir(tmp_path_factory, "Qwen-QwQ-32B.jinja")


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    fixture("templates/Qwen-Qwen3-0.6B.jinja")
    return standin_dir(tmp_path_factory, "Qwen-Qwen3-0.6B.jinja")


def _trained(tok: Path, messages: tuple[dict[str, Any], ...], **opts: Any) -> tuple[str, set[str]]:
    tk = load_tokenizer(tok)
    e = encode_sample(Sample("rows", 1, messages=messages), tk, tk.chat_template, EncodeOptions(**opts))
    ids = [i for i, lab in zip(e.input_ids, e.labels) if lab != -100]
    return tk.decode(ids), {r for r, lab in zip(e.roles, e.labels) if lab != -100}


def inline(question: str = "Capital of France?") -> tuple[dict[str, Any], ...]:
    return ({"role": "user", "content": question},
            {"role": "assistant", "content": f"<think>\n{REASONING}\n</think>\n\n{ANSWER}"})


def test_inline_reasoning_is_its_own_segment_and_trained_by_default(qwq: Path) -> None:
    text, roles = _trained(qwq, inline())
    # QwQ's generation prompt writes "<think>\n": the reasoning the model writes starts after it
    assert text == f"{REASONING}\n</think>\n\n{ANSWER}<|im_end|>"
    assert roles == {"reasoning", "assistant"}


def test_train_on_reasoning_false_trains_only_the_answer(qwq: Path, qwen3: Path) -> None:
    text, roles = _trained(qwq, inline(), train_on_reasoning=False)
    assert text == f"{ANSWER}<|im_end|>" and roles == {"assistant"}
    field = ({"role": "user", "content": "Capital of France?"},
             {"role": "assistant", "content": ANSWER, "reasoning_content": REASONING})
    text, roles = _trained(qwen3, field, train_on_reasoning=False)
    assert text == f"{ANSWER}<|im_end|>" and roles == {"assistant"}
    text, roles = _trained(qwen3, field)
    assert text == f"<think>\n{REASONING}\n</think>\n\n{ANSWER}<|im_end|>" and roles == {"reasoning", "assistant"}


def test_weight_zero_turns_are_context(qwen3: Path) -> None:
    msgs = ({"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5", "weight": 0},
            {"role": "user", "content": "Again?"}, {"role": "assistant", "content": "4"})
    text, _ = _trained(qwen3, msgs)
    assert "5" not in text and text.endswith("4<|im_end|>")


def test_the_lint_label_view_shows_the_reasoning_segment(qwq: Path, tmp_path: Path) -> None:
    rows = [{"messages": list(inline(q))} for q in ("Capital of France?", "And of Italy?")]
    shown = lint_standin(qwq, rows, tmp_path)
    fractions = shown.stats["trainable_fraction_by_role"]
    assert fractions["reasoning"] == 1.0 and fractions["assistant"] == 1.0
    masked = lint_standin(qwq, rows, tmp_path, train_on_reasoning=False)
    assert masked.stats["trainable_fraction_by_role"]["reasoning"] == 0.0
    assert masked.stats["tokens_by_role"]["reasoning"] == shown.stats["tokens_by_role"]["reasoning"] > 0
    assert "special-text-in-content" not in rules(shown)  # <think> in a reasoning answer is its format


@pytest.mark.parametrize("output,opened,expected", [
    ("<think>\nweigh it\n</think>\n\nParis.", False, ("\nweigh it\n", "Paris.", True)),
    ("weigh it</think>\nParis.", True, ("weigh it", "Paris.", True)),
    ("weigh it</think>Paris.", False, ("weigh it", "Paris.", True)),  # the prompt opened it unannounced
    ("still weighing it", True, ("still weighing it", "", False)),
    ("<think>\nstill weighing", False, ("\nstill weighing", "", False)),
    ("Paris.", False, (None, "Paris.", True)),
    ("<seed:think>ok</seed:think>Paris.", False, ("ok", "Paris.", True)),
    ("<|channel|>analysis<|message|>ok<|end|><|start|>assistant<|channel|>final<|message|>Paris.", False,
     ("ok", "<|start|>assistant<|channel|>final<|message|>Paris.", True)),
])
def test_split_reasoning_for_the_probes(output: str, opened: bool, expected: tuple[Any, str, bool]) -> None:
    """The helper the probes use to score the answer after the reasoning block and to tell an unclosed block."""
    from evalsuite.chat.reasoning import split_reasoning

    s = split_reasoning(output, opened=opened)
    assert (s.reasoning, s.answer, s.closed) == expected
