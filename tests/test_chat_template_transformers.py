"""Our sandboxed renderer against transformers' ``apply_chat_template(tokenize=False)`` on every real template in the
fixtures (the .jinja files, the 37 templates of Ollama's index, and the templates inside the tokenizer_config.json
files) over random conversations: roles, Cyrillic and emoji, empty content, special-token look-alikes, with and
without a generation prompt; and over modern conversations: tool calls (object and JSON-string arguments, with and
without ids), tool results with ``tool_call_id`` and ``name``, reasoning in ``reasoning_content``/``thinking``/
``reasoning``, content as text parts or null, and a ``tools`` list. Where the template raises, both must raise."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lint_support import fixtures_dir

from evalsuite.chat.template import TemplateRaised, render

SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def real_templates() -> list[tuple[str, str]]:
    try:
        root = fixtures_dir()
    except pytest.skip.Exception:
        return []
    out = [(p.name, p.read_text(encoding="utf-8")) for p in sorted((root / "templates").glob("*.jinja"))]
    index = root / "templates" / "ollama__template_index.json"
    if index.is_file():
        out += [(f"ollama-index-{i}", e["template"]) for i, e in enumerate(json.loads(index.read_text("utf-8")))
                if isinstance(e, dict) and isinstance(e.get("template"), str)]
    for cfg in sorted((root / "tokenizers").glob("*/tokenizer_config.json")):
        t = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(t, str):
            out.append((f"{cfg.parent.name}-tokenizer_config", t))
    return out


TEMPLATES = real_templates()

PIECES = [*"abc XYZ\n\t", *"привет", "🙂", "👍🏽", "<|im_end|>", "<s>", "</s>", "[INST]", "{{", "%}", "<|eot_id|>",
          "  "]
TEXT = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)
ROLE = st.sampled_from(["user", "assistant", "system", "tool", "user", "assistant"])
MESSAGE = st.fixed_dictionaries({"role": ROLE, "content": TEXT})
# Mostly alternating user/assistant conversations (what templates accept), sometimes anything.
ALTERNATING = st.integers(1, 5).flatmap(lambda n: st.tuples(*[
    st.fixed_dictionaries({"role": st.just("user" if i % 2 == 0 else "assistant"), "content": TEXT})
    for i in range(n)])).map(list)
SYSTEM_FIRST = st.tuples(st.fixed_dictionaries({"role": st.just("system"), "content": TEXT}), ALTERNATING).map(
    lambda t: [t[0], *t[1]])
CONVERSATION = st.one_of(ALTERNATING, SYSTEM_FIRST, st.lists(MESSAGE, min_size=1, max_size=5))


# Modern conversations: every field transformers passes through, in the shapes datasets use them.
NAME = st.sampled_from(["get_weather", "search", "add"])
ARGS = st.one_of(st.fixed_dictionaries({"city": TEXT}), st.just({}), st.just({"a": 1, "b": [2, 3]}))
CALL = st.one_of(
    st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries({"name": NAME,
                                                                                           "arguments": ARGS})}),
    st.fixed_dictionaries({"id": st.just("call12345"), "type": st.just("function"),
                           "function": st.fixed_dictionaries({"name": NAME, "arguments": ARGS.map(json.dumps)})}),
    st.fixed_dictionaries({"name": NAME, "arguments": ARGS}))
REASONING = st.sampled_from(["reasoning_content", "thinking", "reasoning"])
PARTS = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), min_size=1, max_size=2)


@st.composite
def modern_message(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["user", "assistant", "call", "reasoning", "tool", "parts", "system"]))
    if kind == "call":
        return {"role": "assistant", "content": draw(st.sampled_from(["", None, "Let me check."])),
                "tool_calls": draw(st.lists(CALL, min_size=1, max_size=2))}
    if kind == "reasoning":
        return {"role": "assistant", "content": draw(TEXT), draw(REASONING): draw(TEXT)}
    if kind == "tool":
        return {"role": "tool", "content": draw(st.sampled_from(['{"temp": 21}', "42", "ok"])),
                "tool_call_id": "call12345", "name": draw(NAME)}
    if kind == "parts":
        return {"role": draw(st.sampled_from(["user", "assistant"])), "content": draw(PARTS)}
    return {"role": kind, "content": draw(TEXT)}


TOOL = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries({
    "name": NAME, "description": TEXT,
    "parameters": st.just({"type": "object", "properties": {"city": {"type": "string", "description": "a city"}},
                           "required": ["city"]})})})
MODERN = st.tuples(st.lists(modern_message(), min_size=1, max_size=5).map(
    lambda ms: [{"role": "user", "content": "hi"}, *ms]), st.one_of(st.none(), st.lists(TOOL, min_size=1,
                                                                                       max_size=2)))


@pytest.fixture(scope="module")
def hf_tokenizer() -> Any:
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models

    backend = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}, unk_token="<unk>"))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIALS)


def _theirs(tok: Any, template: str, messages: list[dict[str, Any]], gen: bool, tools: Any = None
            ) -> tuple[str | None, str]:
    try:
        return tok.apply_chat_template(copy.deepcopy(messages), chat_template=template, tokenize=False,
                                       add_generation_prompt=gen, tools=copy.deepcopy(tools)), ""
    except Exception as e:  # whatever transformers raises, we must raise too
        return None, f"{type(e).__name__}: {e}"


def _ours(template: str, messages: list[dict[str, Any]], gen: bool, tools: Any = None) -> tuple[str | None, str]:
    try:
        return render(template, messages, add_generation_prompt=gen, special_tokens=SPECIALS, tools=tools).text, ""
    except TemplateRaised as e:
        return None, str(e)


@pytest.mark.skipif(not TEMPLATES, reason="third-party fixtures not found")
@pytest.mark.parametrize("name,template", TEMPLATES, ids=[n for n, _ in TEMPLATES])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=CONVERSATION, gen=st.booleans())
def test_rendering_matches_transformers(hf_tokenizer: Any, name: str, template: str,
                                        messages: list[dict[str, str]], gen: bool) -> None:
    theirs, their_error = _theirs(hf_tokenizer, template, messages, gen)
    ours, our_error = _ours(template, messages, gen)
    if theirs is None:
        assert ours is None, f"transformers raised ({their_error}) but we rendered {ours!r}"
    else:
        assert ours == theirs, our_error


@pytest.mark.skipif(not TEMPLATES, reason="third-party fixtures not found")
@pytest.mark.parametrize("name,template", TEMPLATES, ids=[n for n, _ in TEMPLATES])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conversation=MODERN, gen=st.booleans())
def test_modern_fields_render_as_transformers(hf_tokenizer: Any, name: str, template: str,
                                              conversation: tuple[list[dict[str, Any]], Any], gen: bool) -> None:
    messages, tools = conversation
    theirs, their_error = _theirs(hf_tokenizer, template, messages, gen, tools)
    ours, our_error = _ours(template, messages, gen, tools)
    if theirs is None:
        assert ours is None, f"transformers raised ({their_error}) but we rendered {ours!r}"
    else:
        assert ours == theirs, our_error


def test_the_modern_strategy_reaches_the_fields() -> None:
    """The modern conversations are rendered with their fields on the templates that read them: a template that
    ignored them all would make the comparison above vacuous."""
    if not TEMPLATES:
        pytest.skip("third-party fixtures not found")
    templates = dict(TEMPLATES)
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}
    msgs = [{"role": "user", "content": "hi"}, call, {"role": "tool", "content": "21", "name": "get_weather"},
            {"role": "assistant", "content": "Warm.", "reasoning_content": "It said 21."}]
    qwen3 = render(templates["Qwen-Qwen3-0.6B.jinja"], msgs, special_tokens=SPECIALS,
                   tools=[{"type": "function", "function": {"name": "get_weather"}}]).text
    assert '"city": "Oslo"' in qwen3 and "<tools>" in qwen3 and "It said 21." in qwen3
    # gpt-oss reads `thinking`; transformers (and we) copy reasoning_content there
    oss = render(templates["openai-gpt-oss-120b.jinja"], msgs, special_tokens=SPECIALS).text
    assert "<|channel|>analysis<|message|>It said 21.<|end|>" in oss


def test_the_fixture_set_is_complete() -> None:
    if not TEMPLATES:
        pytest.skip("third-party fixtures not found")
    names = {n for n, _ in TEMPLATES}
    assert len([n for n in names if n.endswith(".jinja")]) >= 18
    assert len([n for n in names if n.startswith("ollama-index-")]) == 37
    assert {"phi3-mini-4k-instruct-tokenizer_config", "gemma-it-tokenizer_config"} <= names


def test_generation_tags_match_transformers_assistant_masks(hf_tokenizer: Any) -> None:
    """Our ``{% generation %}`` spans are the character spans transformers turns into assistant masks."""
    template = (Path(__file__).parent / "lint_data" / "chatml_tags.jinja").read_text(encoding="utf-8")
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "HELLO"},
                {"role": "user", "content": "x"}, {"role": "assistant", "content": "ПРИВЕТ 🙂"}]
    ours = render(template, messages, special_tokens=SPECIALS, track_generation=True)
    from transformers.utils.chat_template_utils import render_jinja_template

    texts, spans = render_jinja_template([messages], chat_template=template, return_assistant_tokens_mask=True,
                                         **SPECIALS)
    assert ours.text == texts[0]
    assert list(ours.generation_spans) == [tuple(s) for s in spans[0]]
    assert [ours.text[a:b] for a, b in ours.generation_spans] == ["HELLO<|im_end|>", "ПРИВЕТ 🙂<|im_end|>"]
