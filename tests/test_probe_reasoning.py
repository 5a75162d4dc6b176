"""Reasoning outputs (issue 11's probe part): the scorer sees the answer after the reasoning block, the sample
records the reasoning's length, and an output that never closes its block is flagged in-reasoning."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from evalsuite.fixtures.tokenizer_builder import build_tokenizer

from evalsuite.chat.tokenizer import TokenizerInfo, load_tokenizer
from evalsuite.probe.batteries import load_battery, resolve_batteries
from evalsuite.probe.generation import Generation, PromptCodec
from evalsuite.probe.reasoning import final_answer, prompt_opens_reasoning, split_reasoning
from evalsuite.probe.runner import _sample, summary_lines
from evalsuite.probe.scorers import Output
from evalsuite.report.cases import fail_reason
from evalsuite.results.schema import EngineInfo, Results

ANSWER = "Plants turn light, water and carbon dioxide into sugar and oxygen."


@pytest.mark.parametrize(("text", "opened", "reasoning", "answer", "closed"), [
    ("<think>\nhmm, light.\n</think>\n\n" + ANSWER, False, "\nhmm, light.\n", ANSWER, True),
    ("hmm, light.\n</think>\n\n" + ANSWER, True, "hmm, light.\n", ANSWER, True),  # the prompt opened it
    ("hmm, light.\n</think>" + ANSWER, False, "hmm, light.\n", ANSWER, True),  # only the close: read the same
    ("hmm, light and more light and", True, "hmm, light and more light and", "", False),  # never closed
    ("<think>hmm, light and", False, "hmm, light and", "", False),
    ("[THINK]x[/THINK]" + ANSWER, False, "x", ANSWER, True),
    (ANSWER, False, None, ANSWER, True),  # no block: the output is the answer
])
def test_split_reasoning(text: str, opened: bool, reasoning: str | None, answer: str, closed: bool) -> None:
    split = split_reasoning(text, opened)
    assert (split.reasoning, split.answer, split.closed) == (reasoning, answer, closed)


def test_markers_that_are_special_tokens_are_found_in_the_raw_decode() -> None:
    # decoded without special tokens the markers are gone; the raw decode keeps them
    out = Output("hmm, lightPlants grow.", "eos", "<|START_THINKING|>hmm, light<|END_THINKING|>Plants grow.<|x|>")
    answer, split = final_answer(out, False, ["<|START_THINKING|>", "<|END_THINKING|>", "<|x|>"])
    assert split is not None and split.reasoning == "hmm, light"
    assert (answer.text, answer.raw) == ("Plants grow.", "Plants grow.<|x|>")  # leakage is still visible in raw
    plain = Output(ANSWER, "eos", ANSWER)
    assert final_answer(plain, False) == (plain, None)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TokenizerInfo:
    return load_tokenizer(build_tokenizer(tmp_path_factory.mktemp("tok")))


def _target(tk: TokenizerInfo, template: str, name: str = "col") -> Any:
    codec = PromptCodec.build(tk, template, [tk.token_id("<|im_end|>") or 0])
    return SimpleNamespace(name=name, codec=codec)


def _gen(text: str, finish: str = "eos") -> Generation:
    return Generation(text=text, finish_reason=finish, tokens=len(text), latency_s=0.1, raw=text)


def test_the_runner_scores_the_answer_after_the_block(tiny: TokenizerInfo, shared_fixtures: Path) -> None:
    qwq = (shared_fixtures / "templates" / "Qwen-QwQ-32B.jinja").read_text(encoding="utf-8")
    battery = load_battery(resolve_batteries(["llama32-ten"])[0])
    case = next(c for c in battery.cases if c.prompt == "How does photosynthesis work?")
    target = _target(tiny, qwq)
    assert prompt_opens_reasoning(target.codec.prompt_text(case.messages))  # QwQ opens <think> for the model

    reasoning = "The user asks how photosynthesis works. Explain simply.\n"
    done = _sample(battery, target, case, _gen(reasoning + "</think>\n\n" + ANSWER))
    assert done.passed, done.details
    assert done.details["answer"] == ANSWER and done.output.startswith(reasoning)  # the whole output is kept
    assert done.details["reasoning"] == {"chars": len(reasoning), "tokens": len(tiny.encode(reasoning)),
                                         "closed": True}
    assert "in_reasoning" not in done.details

    # the same words without the close: the model never got to an answer
    stuck = _sample(battery, target, case, _gen(reasoning + ANSWER, "max-tokens"))
    assert not stuck.passed and stuck.details["in_reasoning"] is True
    assert stuck.details["reasoning"]["closed"] is False and stuck.details["answer"] == ""
    assert {"empty", "truncated"} <= set(stuck.details["reasons"])
    assert fail_reason(stuck).startswith("never closed its reasoning block (in-reasoning)")

    # an echo after the block is still an echo
    echo = _sample(battery, target, case, _gen("ok\n</think>\nHow does photosynthesis work?"))
    assert not echo.passed and echo.details["reasons"] == ["restates-prompt"]

    results = Results("now", "0", EngineInfo("hf", 0, 64), [SimpleNamespace(name="col")],  # type: ignore[list-item]
                      [done, stuck], [])
    assert "in-reasoning 1" in summary_lines(results)[0]


def test_templates_without_reasoning_are_untouched(tiny: TokenizerInfo) -> None:
    assert tiny.chat_template is not None
    battery = load_battery(resolve_batteries(["llama32-ten"])[0])
    case = battery.cases[3]
    s = _sample(battery, _target(tiny, tiny.chat_template), case, _gen(ANSWER))
    assert s.passed and "reasoning" not in s.details and "answer" not in s.details
