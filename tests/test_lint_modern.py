"""The lint on the 32 real templates of the fixtures, each with a stand-in tokenizer carrying its model's control
tokens and its model's stop ids (``evalsuite.fixtures.standins``), on realistic rows built from the real datasets
(``evalsuite.fixtures.chat_rows``): multi-turn, system messages, tool calls and results, reasoning where the model
has it.

- Clean rows give no error, except the defects these templates really have (listed with why).
- Each bug class of issue 11 is flagged by the rule that explains it (and its fix no longer misfires on clean
  data), and so is each modern-training mistake the new rules catch.
- Issue 14's three defects, each on the real template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from evalsuite.fixtures.chat_rows import realistic_rows
from evalsuite.fixtures.standins import BY_TEMPLATE, MODELS
from lint_support import fixtures_dir, lint_standin, rules, standin_dir

# Errors that are true on clean rows: the template itself is the bug.
REAL_DEFECTS: dict[str, set[str]] = {
    # no add_generation_prompt branch: every render ends with an opened assistant header; and its generation
    # config stopped only on <|end_of_text|> while turns end with <|eot_id|>
    "Meta-Llama-3-8B-Instruct__original-2024-04.jinja": {"open-turn-at-end", "missing-generation-prompt",
                                                         "stop-token-not-generated"},
    # always ends with "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>", whatever add_generation_prompt says
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja": {"open-turn-at-end", "missing-generation-prompt"},
    # an answer has no terminator: the next turn's <|user|> ends it, and that belongs to the next turn
    "THUDM-glm-4-9b-chat.jinja": {"eos-not-trained"},
    # keeps only the text after </think> of every answer while its generation prompt opens <think>: the stock
    # template cannot train reasoning (TRL ships a training template for it)
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": {"reasoning-dropped", "train-infer-mismatch"},
    # writes the system message only before a last user message: a training row (ending with the answer) loses
    # it, and the inference prompt has it where training does not
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": {"role-not-in-template", "train-infer-mismatch"},
}
NAMES = [m.template for m in MODELS]


def template_path(name: str) -> Path:
    p = fixtures_dir() / "templates" / name
    if not p.is_file():
        pytest.skip(f"template {name} missing")
    return p


def standin(request: pytest.FixtureRequest, name: str) -> Path:
    template_path(name)
    return standin_dir(request.getfixturevalue("tmp_path_factory"), name)


def lint_rows(request: pytest.FixtureRequest, name: str, rows: list[Any], tmp: Path, **options: Any) -> Any:
    return lint_standin(standin(request, name), rows, tmp, **options)


def errors(report: Any) -> set[str]:
    return {f.rule for f in report.findings if f.severity == "error"}


def test_every_fixture_template_has_a_model() -> None:
    on_disk = {p.name for p in (fixtures_dir() / "templates").glob("*.jinja")}
    assert on_disk == set(NAMES) and len(NAMES) == 32


@pytest.mark.parametrize("name", NAMES)
def test_clean_realistic_rows_give_no_false_error(request: pytest.FixtureRequest, name: str, tmp_path: Path) -> None:
    model = BY_TEMPLATE[name]
    rows = realistic_rows(fixtures_dir(), model)
    roles = {m["role"] for r in rows for m in r["messages"]}
    assert len(rows) == 20 and {"user", "assistant"} <= roles
    assert any(sum(m["role"] == "assistant" for m in r["messages"]) >= 3 for r in rows)  # multi-turn
    assert ("system" in roles) == model.system
    if model.tools:
        assert "tool" in roles
    if model.reasoning is not None:
        assert any("<think>" in str(m.get("content")) or m.get(model.reasoning) for r in rows for m in r["messages"])
    report = lint_rows(request, name, rows, tmp_path)
    assert errors(report) == REAL_DEFECTS.get(name, set()), [(f.rule, f.message) for f in report.findings]
    assert report.stats["rows"] == 20


# -- issue 11: the five classes -------------------------------------------------------------------------------

def qa(answer: str, question: str = "Capital of France?") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


THINK = "<think>\nThe capital of France is Paris.\n</think>\n\nParis."


def test_class1_reasoning_answers_are_judged_on_their_real_text(request: pytest.FixtureRequest,
                                                                tmp_path: Path) -> None:
    """QwQ's generation prompt opens <think>: answers that start with their reasoning are fine (the check used to
    compare the prompt with placeholder contents and fired on every row); answers without it are not."""
    clean = lint_rows(request, "Qwen-QwQ-32B.jinja", [qa(THINK), qa(THINK, "And Italy?")], tmp_path)
    assert "train-infer-mismatch" not in rules(clean)
    bad = lint_rows(request, "Qwen-QwQ-32B.jinja", [qa(THINK), qa("Rome.", "And Italy?")], tmp_path)
    f = rules(bad)["train-infer-mismatch"]
    assert f.count == 1 and f.severity == "error" and "reasoning block" in f.message


def test_class2_a_terminator_of_several_tokens_stops_on_any_of_them(request: pytest.FixtureRequest,
                                                                    tmp_path: Path) -> None:
    """Command-R7B ends answers with <|END_RESPONSE|><|END_OF_TURN_TOKEN|> and stops on the second: not a
    stop-token-not-generated (the first token used to be taken as the end of turn). Without the model's generation
    config the server stops on nothing of it: reported."""
    name = "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja"
    rows = [qa("Paris."), qa("Rome.", "And Italy?")]
    assert "stop-token-not-generated" not in rules(lint_rows(request, name, rows, tmp_path))
    wrong = tmp_path / "wrong_stops.json"
    tok = standin(request, name)
    ids = {t["content"]: t["id"] for t in json.loads((tok / "tokenizer.json").read_text("utf-8"))["added_tokens"]}
    wrong.write_text(json.dumps({"eos_token_id": [ids["<EOS_TOKEN>"]]}), encoding="utf-8")
    from lint_support import run

    bad = run(tok, rows, tmp_path, generation_config=str(wrong), eos_token="<EOS_TOKEN>")
    f = rules(bad)["stop-token-not-generated"]
    assert "<|END_RESPONSE|><|END_OF_TURN_TOKEN|>" in f.message and f.count == 2


TOOL_ROW = {"messages": [
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
    {"role": "tool", "content": '{"temp": 21, "sky": "clear \\"sunny\\""}', "tool_call_id": "call12345",
     "name": "get_weather"},
    {"role": "assistant", "content": "21 degrees and clear."}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                                "parameters": {"type": "object",
                                                               "properties": {"city": {"type": "string"}}}}}]}


@pytest.mark.parametrize("name", ["meta-llama-Llama-3.1-8B-Instruct.jinja", "openai-gpt-oss-120b.jinja"])
def test_class3_tool_results_written_through_tojson_are_found(request: pytest.FixtureRequest, name: str,
                                                              tmp_path: Path) -> None:
    """Both templates write a tool result with `|tojson` (quotes escaped): it is in the render."""
    report = lint_rows(request, name, [TOOL_ROW], tmp_path)
    assert "role-not-in-template" not in rules(report)
    assert not errors(report), [(f.rule, f.message) for f in report.findings]


def test_class3_a_tool_result_a_template_really_drops_is_still_reported(request: pytest.FixtureRequest,
                                                                      tmp_path: Path) -> None:
    report = lint_rows(request, "Phi-3-mini-4k-instruct.jinja", [TOOL_ROW], tmp_path)
    f = rules(report)["role-not-in-template"]
    assert f.severity == "error" and "tool" in f.message and "roles:" not in f.message
    assert {"tools-ignored", "tool-calls-dropped"} <= errors(report)


@pytest.mark.parametrize("template,tokenizer_of", [
    ("deepseek-ai-DeepSeek-V3.1.jinja", "Meta-Llama-3-8B-Instruct.jinja"),
    ("ByteDance-Seed-OSS.jinja", "Qwen-Qwen2.5-7B-Instruct.jinja")])
def test_class4_control_tokens_outside_the_ascii_bar_shape(request: pytest.FixtureRequest, template: str,
                                                           tokenizer_of: str, tmp_path: Path) -> None:
    """DeepSeek's full-width <｜User｜> and Seed's namespaced <seed:bos> on a tokenizer that lacks them (they used to
    pass clean while every role marker was plain text); with their own tokenizer, clean."""
    rows = [qa("Paris."), qa("Rome.", "And Italy?")]
    template_path(template)
    wrong = lint_standin(standin(request, tokenizer_of), rows, tmp_path, template=template)
    f = rules(wrong)["control-token-split"]
    assert f.severity == "error" and ("<｜User｜>" in f.message or "<seed:bos>" in f.message)
    assert "control-token-split" not in rules(lint_rows(request, template, rows, tmp_path))


def test_class5_reasoning_data_gets_no_wrong_findings(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """QwQ strips the reasoning of earlier answers. That is not a dropped role (with the wrong advice "map it
    with roles:"), the kept answers are not injected text, and <think> in an answer is not stray special text;
    the dropped reasoning itself is reported by reasoning-dropped."""
    rows = [{"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": THINK},
                          {"role": "user", "content": "And Italy?"},
                          {"role": "assistant", "content": "<think>\nItaly's is Rome.\n</think>\n\nRome."}]}]
    report = lint_rows(request, "Qwen-QwQ-32B.jinja", rows, tmp_path)
    found = rules(report)
    assert "role-not-in-template" not in found and "special-text-in-content" not in found
    assert all("Paris" not in f.message for f in report.findings if f.rule == "injected-text")
    assert found["reasoning-dropped"].severity == "error" and "last turn" in found["reasoning-dropped"].message
    # stray special text in content is still reported
    user = lint_rows(request, "Qwen-QwQ-32B.jinja", [qa(THINK, "What does <|im_end|> do?")], tmp_path)
    assert "special-text-in-content" in rules(user)


# -- issue 11: the new rules ----------------------------------------------------------------------------------

def reasoning_turns(n: int, field: bool) -> dict[str, Any]:
    msgs: list[dict[str, Any]] = []
    for i in range(n):
        msgs.append({"role": "user", "content": f"Question {i}?"})
        if field:
            msgs.append({"role": "assistant", "content": f"Answer {i}.", "reasoning_content": f"Thinking {i} over."})
        else:
            msgs.append({"role": "assistant", "content": f"<think>\nThinking {i} over.\n</think>\n\nAnswer {i}."})
    return {"messages": msgs}


def test_reasoning_dropped_from_earlier_turns_and_never_rendered(request: pytest.FixtureRequest,
                                                                 tmp_path: Path) -> None:
    qwen3 = lint_rows(request, "Qwen-Qwen3-0.6B.jinja", [reasoning_turns(3, field=True)], tmp_path)
    f = rules(qwen3)["reasoning-dropped"]
    assert "last turn" in f.message and "2 earlier answers" in f.message
    assert "reasoning-dropped" not in rules(lint_rows(request, "Qwen-Qwen3-0.6B.jinja",
                                                      [reasoning_turns(1, field=True)], tmp_path))
    # earlier answers that are context only (weight 0) are not trained without their reasoning
    context = reasoning_turns(3, field=True)
    context["messages"] = [{**m, "weight": 0} if m["role"] == "assistant" and i < 5 else m
                           for i, m in enumerate(context["messages"])]
    assert "reasoning-dropped" not in rules(lint_rows(request, "Qwen-Qwen3-0.6B.jinja", [context], tmp_path))
    llama = lint_rows(request, "Meta-Llama-3-8B-Instruct.jinja", [reasoning_turns(2, field=True)], tmp_path)
    assert "never renders" in rules(llama)["reasoning-dropped"].message
    # reasoning written in the content is copied by a template that only copies content
    assert "reasoning-dropped" not in rules(lint_rows(request, "Meta-Llama-3-8B-Instruct.jinja",
                                                      [reasoning_turns(2, field=False)], tmp_path))


def test_empty_reasoning_blocks_the_template_adds(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    report = lint_rows(request, "Qwen-Qwen3-0.6B.jinja", [qa("Paris.")], tmp_path)
    assert rules(report)["empty-reasoning"].severity == "warning"
    assert "empty-reasoning" not in rules(lint_rows(request, "Qwen-Qwen3-0.6B.jinja",
                                                    [reasoning_turns(1, field=True)], tmp_path))


def test_tools_ignored_and_tool_calls_dropped(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    llama3 = errors(lint_rows(request, "Meta-Llama-3-8B-Instruct.jinja", [TOOL_ROW], tmp_path))
    assert {"tools-ignored", "tool-calls-dropped"} <= llama3
    qwen = lint_rows(request, "Qwen-Qwen2.5-7B-Instruct.jinja", [TOOL_ROW], tmp_path)
    assert not errors(qwen), [(f.rule, f.message) for f in qwen.findings]
    # DeepSeek-R1's template renders calls only when content is null, which apply_chat_template drops (and then
    # the template fails); with an empty content the calls are silently dropped
    r1_row = {"messages": [{**m, "tool_calls": [{**c, "function": {**c["function"], "arguments": '{"city": "Oslo"}'}}
                                               for c in m["tool_calls"]]} if m.get("tool_calls") else m
                           for m in TOOL_ROW["messages"]]}
    assert "tool-calls-dropped" in errors(lint_rows(request, "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
                                                    [r1_row], tmp_path))


def test_tool_calls_mapped_to_plain_answers(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The real glaive file with its function_call turns mapped to the assistant role (`roles:`) trains the calls as
    answer text."""
    glaive = fixtures_dir() / "datasets" / "sharegpt" / "llamafactory__glaive_toolcall_en_demo.json"
    tok = standin(request, "Qwen-Qwen2.5-7B-Instruct.jinja")
    cfg = tmp_path / "glaive.yaml"
    cfg.write_text(f"base_model: {tok}\ndatasets:\n  - path: {glaive}\n    type: sharegpt\n    roles:\n"
                   "      assistant: [gpt, function_call]\n", encoding="utf-8")
    from evalsuite.lint.runner import run_lint
    from evalsuite.lint.setup import from_config

    found = rules(run_lint(from_config(cfg)))
    assert found["tool-call-as-text"].severity == "warning" and found["tool-call-as-text"].count > 100
    cfg.write_text(f"base_model: {tok}\ndatasets:\n  - path: {glaive}\n    type: sharegpt\n", encoding="utf-8")
    assert "tool-call-as-text" not in rules(run_lint(from_config(cfg)))


# -- issue 14: the three defects on the real templates ---------------------------------------------------------

def test_every_trained_terminator_must_stop(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """gpt-oss ends earlier answers with <|end|> and the last with <|return|>: when earlier answers are trained,
    <|end|> is learned and no server stops on it. Training only the last answer is clean."""
    model = BY_TEMPLATE["openai-gpt-oss-120b.jinja"]
    every = lint_rows(request, model.template, realistic_rows(fixtures_dir(), model, all_turns=True), tmp_path)
    f = rules(every)["stop-token-not-generated"]
    assert f.severity == "error" and "'<|end|>'" in f.message and "<|return|>" not in f.message.split(" but ")[0]
    last = lint_rows(request, model.template, realistic_rows(fixtures_dir(), model), tmp_path)
    assert "stop-token-not-generated" not in rules(last)


@pytest.mark.parametrize("name,marker", [("HuggingFaceH4-zephyr-7b-beta.jinja", "<|user|>"),
                                         ("Llama-2-7b-chat-hf.jinja", "<<SYS>>")])
def test_plain_text_markers_by_design_are_warnings(request: pytest.FixtureRequest, name: str, marker: str,
                                                   tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "Hello."}]}]
    report = lint_rows(request, name, rows, tmp_path)
    f = rules(report)["control-token-split"]
    assert f.severity == "warning" and marker in f.message and "plain text" in f.message
    assert report.exit_code == 0


def test_a_family_control_token_missing_from_the_tokenizer_is_still_an_error(request: pytest.FixtureRequest,
                                                                            tmp_path: Path) -> None:
    """Mistral v7's [SYSTEM_PROMPT] on a tokenizer whose bracket tokens ([INST]...) lack it; and a marker the
    tokenizer has as an added token but still splits."""
    from dataclasses import replace

    from evalsuite.fixtures.standins import write_tokenizer

    name = "Mistral-Small-3.2-24B-Instruct-2506.jinja"
    template_path(name)
    model = BY_TEMPLATE[name]
    old = replace(model, controls=tuple(t for t in model.controls if "SYSTEM_PROMPT" not in t))
    tok = write_tokenizer(tmp_path / "v3", fixtures_dir(), old)
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "Hello."}]}]
    f = rules(lint_standin(tok, rows, tmp_path))["control-token-split"]
    assert f.severity == "error" and "[SYSTEM_PROMPT]" in f.message


def test_messages_show_the_rows_real_text(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    report = lint_rows(request, "Qwen-QwQ-32B.jinja", [qa("Rome, without thinking.", "Capital of Italy?")],
                       tmp_path)
    message = rules(report)["train-infer-mismatch"].message
    assert "Rome, without thinking." in message
    assert not any("\ue000" <= ch <= "\ue8ff" or ch in "\u2003\u3000" for ch in message)
