"""The fast encoder is provably the slow one: spliced layouts vs full renders on every template, the lint's row
facts vs the trainer's label lists, and our tokenizer backend vs transformers' on every tokenizer we have."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lint_support import (  # noqa: F401  (fixtures)
    LINT_DATA,
    chat,
    fixture_gemma_dir,
    fixture_llama3_dir,
    fixture_phi3_dir,
    fixture_tiny_tok,
    fixtures_dir,
    write_jsonl,
)

from evalsuite.chat.encode import EncodeOptions, encode_batch, stop_strings
from evalsuite.chat.layout import Planner, ShapeKey, Turn, resolve, shape_key
from evalsuite.chat.template import TemplateRaised, render
from evalsuite.chat.tokenizer import load_tokenizer
from evalsuite.config.rows import Sample


def all_templates() -> list[tuple[str, str]]:
    ours = [(p.name, p.read_text(encoding="utf-8")) for p in sorted(LINT_DATA.glob("*.jinja"))
            if not p.name.startswith(("escape", "broken"))]
    try:
        root = fixtures_dir()
    except pytest.skip.Exception:
        return ours
    return ours + [(p.name, p.read_text(encoding="utf-8")) for p in sorted((root / "templates").glob("*.jinja"))]


TEMPLATES = all_templates()
VARIABLES = (("bos_token", "<s>"), ("eos_token", "</s>"), ("pad_token", None))
PIECES = [*"ab Z\n\t ", "при", "🙂", "<|im_end|>", "</s>", "<s>", "\n\n", "  "]
TEXT = st.lists(st.sampled_from(PIECES), max_size=6).map("".join)
ROLES = st.lists(st.sampled_from(["user", "assistant", "system", "tool"]), min_size=1, max_size=5)
ALTERNATING = st.integers(1, 6).map(lambda n: ["system"] * 0 + ["user" if i % 2 == 0 else "assistant"
                                                                 for i in range(n)])


@st.composite
def conversation(draw: Any) -> tuple[dict[str, str], ...]:
    roles = draw(st.one_of(ALTERNATING, ALTERNATING.map(lambda r: ["system", *r]), ROLES))
    return tuple({"role": r, "content": draw(TEXT)} for r in roles)


@pytest.mark.parametrize("name,template", TEMPLATES, ids=[n for n, _ in TEMPLATES])
@pytest.mark.parametrize("train_on_inputs", [False, True])
@settings(max_examples=30, deadline=None)
@given(messages=conversation())
def test_spliced_cut_equals_rendered_cut(name: str, template: str, train_on_inputs: bool,
                                         messages: tuple[dict[str, str], ...]) -> None:
    planner = Planner(template, VARIABLES, train_on_inputs, ("<|im_end|>", "</s>", "<|eot_id|>", "<|end|>"))
    try:
        slow = planner.slow_cut(messages)
    except TemplateRaised:
        with pytest.raises(TemplateRaised):
            planner.cut(messages)
        return
    fast = planner.cut(messages)
    assert fast.text == slow.text
    assert resolve(fast.points, fast.text) == resolve(slow.points, slow.text)
    assert (fast.roles, fast.trained) == (slow.roles, slow.trained)
    assert (fast.tag_spans, fast.diff_spans, fast.gen_points) == (slow.tag_spans, slow.diff_spans, slow.gen_points)


def test_common_templates_are_spliced_and_content_inspecting_ones_are_not() -> None:
    if not any(n.startswith("Qwen-Qwen3") for n, _ in TEMPLATES):
        pytest.skip("third-party fixtures not found")
    templates = dict(TEMPLATES)
    ua = ShapeKey((Turn("user", True), Turn("assistant", True)))
    for name in ("Phi-3-mini-4k-instruct.jinja", "Meta-Llama-3-8B-Instruct.jinja", "google-gemma-2-2b-it.jinja",
                 "Qwen-Qwen2.5-7B-Instruct.jinja", "meta-llama-Llama-3.1-8B-Instruct.jinja", "chatml_tags.jinja"):
        plan = Planner(templates[name], VARIABLES, False, ("</s>",)).shape(ua)
        assert plan.layout is not None, (name, plan.why_slow)
    qwen3 = Planner(templates["Qwen-Qwen3-0.6B.jinja"], VARIABLES, False, ("</s>",)).shape(ua)
    assert qwen3.layout is None and "inspects message content" in (qwen3.why_slow or "")
    # Llama-3.1 runs `content | tojson` only for tool messages: that shape falls back, user/assistant does not.
    llama31 = Planner(templates["meta-llama-Llama-3.1-8B-Instruct.jinja"], VARIABLES, False, ("</s>",))
    assert llama31.shape(ShapeKey((Turn("user", True), Turn("tool", True)))).layout is None


def test_instrumented_template_renders_identically() -> None:
    msgs = ({"role": "user", "content": "a"}, {"role": "assistant", "content": "</think>b"})
    for _name, template in TEMPLATES:
        try:
            plain = render(template, msgs, special_tokens=dict(VARIABLES)).text
        except TemplateRaised:
            continue
        assert render(template, msgs, special_tokens=dict(VARIABLES), instrumented=True).text == plain


def random_rows(seed: int, n: int) -> list[Sample]:
    rnd = random.Random(seed)
    words = ["hello", "ПРИВЕТ", "🙂", " ", "\n", "x y", "", "<|im_end|>", "<|eot_id|>", "Q?", "  ", "done."]
    rows = []
    for i in range(n):
        turns = rnd.choice([2, 2, 3, 4])
        roles = (["system"] if turns == 3 else []) + ["user", "assistant"] * 2
        msgs = tuple({"role": r, "content": "".join(rnd.choice(words) for _ in range(rnd.randint(0, 5)))}
                     for r in roles[:turns])
        rows.append(Sample("rows.jsonl", i + 1, messages=msgs))
    return rows


@pytest.mark.parametrize("tok_name,template", [
    ("tiny_tok", None), ("llama3_dir", "Meta-Llama-3-8B-Instruct.jinja"),
    ("llama3_dir", "Meta-Llama-3-8B-Instruct__original-2024-04.jinja"),
    ("phi3_dir", "Phi-3-mini-4k-instruct.jinja"), ("tiny_tok", "chatml_tags_content_only.jinja")])
@pytest.mark.parametrize("collator,max_length", [("trl", None), ("mask-pad-id", 24)])
def test_lint_row_facts_equal_the_trainer_labels(request: pytest.FixtureRequest, tok_name: str,
                                                 template: str | None, collator: str, max_length: int | None,
                                                 tmp_path: Path) -> None:
    """What the lint counts per row (without label lists) is what encode_batch's labels say, row by row."""
    from evalsuite.lint.rows import RowChecker
    from evalsuite.lint.setup import LintSetup
    from evalsuite.lint.shapes import build_context

    tk = load_tokenizer(request.getfixturevalue(tok_name))
    if tk.pad_token is None:
        tk = tk.with_special({"pad_token": tk.eos_token or ""})
    source = dict(TEMPLATES).get(template) if template else tk.chat_template
    if source is None:
        pytest.skip("template fixture missing")
    samples = random_rows(7, 120)
    setup = LintSetup(tk=tk, template=source, samples=samples, source="rows", max_length=max_length,
                      collator=collator)
    ctx = build_context(setup)
    checker = RowChecker(ctx)
    rp = checker.run(range(len(samples)))
    encoded = encode_batch(samples, tk, source, EncodeOptions(False, max_length))
    stops = {tk.token_id(s) for s in stop_strings(tk, source)} - {None}
    pad = tk.token_id(tk.pad_token) if collator == "mask-pad-id" else None
    role_trained: dict[str, int] = {}
    no_train, no_stop = [], []
    for i, e in enumerate(encoded):
        trained = [t for t, lab in enumerate(e.labels) if lab != -100 and t > 0 and e.input_ids[t] != pad]
        for t in trained:
            role_trained[e.roles[t]] = role_trained.get(e.roles[t], 0) + 1
        if not trained:
            no_train.append(i)
        elif not any(e.input_ids[t] in stops for t in trained):
            no_stop.append(i)
    assert {r: n for r, n in rp.role_trained.items() if n} == role_trained
    assert rp.hits.get("no-trainable-tokens", []) == no_train
    assert sorted(rp.hits.get("eos-not-trained", []) + rp.hits.get("eos-truncated", [])) == no_stop
    assert rp.tokens == sum(len(e.input_ids) for e in encoded)
    assert rp.truncated == sum(e.truncated for e in encoded)


TEXTS = ["Hello world", " leading space", "two  spaces\n\nand lines\n", "Привет 🙂 мир", "<s> x </s>y",
         "<|user|>\nHi<|end|>\n<|assistant|>\n", "<|im_start|>user\nhi<|im_end|>\n", "tab\there",
         "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", "<start_of_turn>user\nhi<end_of_turn>\n",
         "x<|endoftext|>", "123456789 3.14159", "don't won't I'll", "  \n "]


@pytest.mark.parametrize("tok_name", ["phi3_dir", "llama3_dir", "tiny_tok", "gemma_dir", "phi3-mini-128k-instruct",
                                      "phi3-medium-4k-instruct", "tiny-base model dir", "phi3 model dir"])
def test_tokenizer_backend_matches_transformers(request: pytest.FixtureRequest, tok_name: str,
                                                tmp_path: Path) -> None:
    """Including the class AutoTokenizer picks from the model's config.json (qwen2 forces Qwen2Tokenizer, phi3
    forces tokenizer.json as written)."""
    transformers = pytest.importorskip("transformers")
    if tok_name.startswith("phi3-"):
        path = fixtures_dir() / "tokenizers" / tok_name
    elif tok_name == "tiny-base model dir":
        from evalsuite.fixtures.tiny_model import tiny_tokenizer_dir

        path = tiny_tokenizer_dir()
        if not (path / "config.json").is_file():
            pytest.skip("tiny base not committed")
    elif tok_name == "phi3 model dir":
        path = tmp_path / "phi3"
        shutil.copytree(request.getfixturevalue("phi3_dir"), path)
        (path / "config.json").write_text(json.dumps({"model_type": "phi3"}), encoding="utf-8")
    else:
        path = request.getfixturevalue(tok_name)
    ours = load_tokenizer(path)
    hf = transformers.AutoTokenizer.from_pretrained(str(path))
    assert ours.compat_note is None
    for text in TEXTS:
        for special in (False, True):
            assert ours.tokenizer.encode(text, add_special_tokens=special).ids == \
                hf(text, add_special_tokens=special)["input_ids"], (text, special)
    assert {k: v for k, v in ours.special.items() if v} == hf.special_tokens_map


def test_encode_sample_errors_name_the_row(tiny_tok: Path) -> None:
    tk = load_tokenizer(tiny_tok)
    template = (LINT_DATA / "broken_call.jinja").read_text(encoding="utf-8")
    s = Sample("data.jsonl", 7, messages=({"role": "user", "content": "hi"},))
    with pytest.raises(TemplateRaised, match=r"^data\.jsonl:7: chat template"):
        encode_batch([s], tk, template, EncodeOptions())
    assert shape_key(s.messages or ()) == ShapeKey((Turn("user", True),))
