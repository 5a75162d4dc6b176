"""Our sandboxed renderer against transformers' ``apply_chat_template(tokenize=False)`` on every real template in the
fixtures (the .jinja files, the 37 templates of Ollama's index, and the templates inside the tokenizer_config.json
files) over random conversations: roles, Cyrillic and emoji, empty content, special-token look-alikes, with and
without a generation prompt. Where the template raises, both must raise."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def hf_tokenizer() -> Any:
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models

    backend = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}, unk_token="<unk>"))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIALS)


def _theirs(tok: Any, template: str, messages: list[dict[str, str]], gen: bool) -> tuple[str | None, str]:
    try:
        return tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                       add_generation_prompt=gen), ""
    except Exception as e:  # whatever transformers raises, we must raise too
        return None, f"{type(e).__name__}: {e}"


def _ours(template: str, messages: list[dict[str, str]], gen: bool) -> tuple[str | None, str]:
    try:
        return render(template, messages, add_generation_prompt=gen, special_tokens=SPECIALS).text, ""
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
