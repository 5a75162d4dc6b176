"""Property: whatever config, data rows and template a user hands `evalsuite lint`, it ends with exit 0, 1 or 2 and
never a traceback or a hang. Random YAML configs (known and unknown keys, odd values, broken YAML, aliases), random
JSONL rows (any JSON, broken lines, wrong types) and random templates from a small grammar (loops, conditions,
indexing, arithmetic, the render budget's edges, syntax errors) run in-process under a time limit."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_helpers import ROOT, time_limit
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from evalsuite.chat import budget
from evalsuite.cli import main
from evalsuite.config.fields import FIELDS
from evalsuite.config.load import load_config
from evalsuite.config.rows import load_samples
from evalsuite.errors import EvalsuiteError

TINY = ROOT / "fixtures" / "tiny-base"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

def rarely(odd: st.SearchStrategy[Any], usual: st.SearchStrategy[Any], p: float) -> st.SearchStrategy[Any]:
    """``odd`` with probability about ``p``, else ``usual`` (so that most cases get past the first check)."""
    return st.integers(1, 1000).flatmap(lambda x: odd if x > (1 - p) * 1000 else usual)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.text(max_size=12),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["auto", "lora", "2e-4", ""]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6),
                                                                                           inner, max_size=3),
                      max_leaves=6)
junk_config = st.dictionaries(st.sampled_from([*sorted(FIELDS), "wandb_project", "lora_rr", "datasets"]), values,
                              max_size=5)
plausible_config = st.fixed_dictionaries({}, optional={
    "sequence_len": st.integers(1, 64), "train_on_inputs": st.booleans(), "sample_packing": st.booleans(),
    "special_tokens": st.fixed_dictionaries({"pad_token": st.sampled_from(["<|im_end|>", "<pad>", "x"])}),
    "ignore": st.lists(st.sampled_from(["double-eos", "injected-text", "no-such-rule"]), max_size=2),
    "lint_collator": st.sampled_from(["trl", "mask-pad-id"]), "chat_template": st.sampled_from(["chatml",
                                                                                                "tokenizer_default"])})
configs = rarely(junk_config, plausible_config, 1 / 5)
YAML_NOISE = ["foo: &a [*a]", "lora_r: 4", "lora_r: [", "  - bad indent", "x: &b {k: 1}\ny: *b", "? [a]\n: b",
              "learning_rate: .inf", "datasets:\n  - {path: nope.jsonl, type: alpaca}", "\t tab: 1", "---\n- a"]

roles = st.one_of(st.sampled_from(["user", "assistant", "system", "tool", "gpt", "human", ""]), st.integers(),
                  st.none())
contents = st.one_of(st.text(max_size=20), st.none(), st.integers(), st.lists(st.text(max_size=5), max_size=2),
                     st.sampled_from(["<|im_start|>", "<|im_end|>", "{{ x }}", "\x00", "é" * 3]))
turn = st.tuples(st.text(max_size=20), st.text(max_size=20)).map(
    lambda qa: [{"role": "user", "content": qa[0]}, {"role": "assistant", "content": qa[1]}])
chats = st.lists(turn, min_size=1, max_size=3).map(lambda ts: {"messages": [m for t in ts for m in t]})
junk_rows = st.one_of(
    st.fixed_dictionaries({"messages": st.lists(st.fixed_dictionaries({"role": roles, "content": contents}),
                                                max_size=4)}),
    st.fixed_dictionaries({"conversations": st.lists(st.fixed_dictionaries({"from": roles, "value": contents}),
                                                     max_size=3)}),
    st.fixed_dictionaries({"instruction": contents, "output": contents}),
    st.fixed_dictionaries({"text": contents}),
    values,
)
raw_lines = rarely(st.one_of(junk_rows.map(json.dumps), st.sampled_from(["{not json", "", "[]", "null", '"x"'])),
                   chats.map(json.dumps), 1 / 15)

# Templates from a small grammar: text and expressions inside balanced loops and conditions, plus pieces that fail
# (raise_exception, 1/0, indexing past the end, the render budget's edges, syntax errors, sandbox escapes).
TEXT = ["<|im_start|>", "<|im_end|>\n", "text ", "\n", "{{ eos_token }}", "{{ bos_token }}"]
EXPRS = ["{{ m.content }}", "{{ m['role'] }}", "{{ m.content|trim }}", "{{ loop.index }}", "{{ m.content ~ m.role }}",
         "{{ m.content.upper() }}", "{{ messages|length }}"]
FAULTS = ["{{ raise_exception('no') }}", "{{ 1 / 0 }}", "{{ messages[7].content }}", "{{ m.content[0] }}",
          "{{ 'x' * 99999999 }}", "{{ range(10**6)|length }}", "{{ (m.content|length) // 0 }}", "{{ }}", "{% endif %}",
          "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", "{{ m.__class__ }}",
          "{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}", "{% generation %}"]
leaf = rarely(st.sampled_from(FAULTS), st.sampled_from(TEXT + EXPRS), 1 / 12)
template_body = st.recursive(
    st.lists(leaf, max_size=3).map("".join),
    lambda inner: st.one_of(
        inner.map(lambda b: "{% for m in messages %}" + b + "{% endfor %}"),
        st.tuples(st.sampled_from(["add_generation_prompt", "m.role == 'user'", "loop.last"]), inner, inner).map(
            lambda t: "{% if " + t[0] + " %}" + t[1] + "{% else %}" + t[2] + "{% endif %}"),
        inner.map(lambda b: "{% generation %}" + b + "{% endgeneration %}"),
        st.lists(inner, max_size=3).map("".join)),
    max_leaves=8)
templates = st.one_of(template_body.map(lambda b: "{% for m in messages %}" + b + "{% endfor %}"), template_body)


def run(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.MonkeyPatch.context() as mp:
        mp.setattr(budget, "SECONDS", 1.0)
        with time_limit(120, f"evalsuite {' '.join(argv)}"):
            rc = main(argv)  # anything but EvalsuiteError escapes main and fails the test with its traceback
    return rc, err.getvalue()


def errors(err: str) -> int:
    return sum(line.startswith("error: ") for line in err.splitlines())


def write_case(folder: Path, config: dict[str, Any], noise: list[str], lines: list[str], template: str) -> Path:
    data = folder / "data.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "t.jinja").write_text(template, encoding="utf-8")
    body = {"base_model": str(TINY), **config}
    if "datasets" not in config:
        body["datasets"] = [{"path": str(data), "type": "chat_template"}]
    try:
        text = yaml.safe_dump(body, allow_unicode=True)
    except yaml.YAMLError:
        text = f"base_model: {TINY}\n"
    cfg = folder / "config.yaml"
    cfg.write_text(text + "\n".join(noise) + "\n", encoding="utf-8")
    return cfg


@SETTINGS
@given(config=configs, noise=rarely(st.lists(st.sampled_from(YAML_NOISE), min_size=1, max_size=2), st.just([]), 1 / 5),
       lines=st.lists(raw_lines, min_size=1, max_size=5), template=templates)
def test_lint_never_crashes_or_hangs(config: dict[str, Any], noise: list[str], lines: list[str],
                                     template: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = write_case(folder, config, noise, lines, template)
        rc, err = run(["lint", str(cfg)])
        event(f"config: exit {rc}")
        assert rc in (0, 1, 2) and "Traceback" not in err
        assert rc != 2 or errors(err) == 1, err
        rc, err = run(["lint", "--tokenizer", str(TINY), "--data", str(folder / "data.jsonl"), "--chat-template",
                       str(folder / "t.jinja")])
        event(f"options: exit {rc}")
        assert rc in (0, 1, 2) and "Traceback" not in err
        assert rc != 2 or errors(err) == 1, err


@SETTINGS
@given(config=configs, noise=st.lists(st.sampled_from(YAML_NOISE), max_size=3), lines=st.lists(raw_lines,
                                                                                                 max_size=6))
def test_config_and_data_loading_raise_only_clear_errors(config: dict[str, Any], noise: list[str],
                                                         lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_case(Path(tmp), config, noise, lines, "")
        with time_limit(60, "loading a config and its data"):
            try:
                loaded = load_config(cfg)
                for spec in loaded.datasets:
                    load_samples(spec, base_dir=cfg.parent)
            except EvalsuiteError as e:
                assert str(e) and "\n" not in str(e).strip()
