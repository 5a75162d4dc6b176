"""Property: whatever config, data rows and template a user hands `evalsuite lint`, it ends with exit 0, 1 or 2 and
never a traceback or a hang. Random YAML configs (known and unknown keys, odd values, broken YAML, aliases), random
JSONL rows (any JSON, broken lines, wrong types) and random templates from a small grammar (loops, conditions,
indexing, arithmetic, the render budget's edges, syntax errors) run in-process under a time limit. Hostile shapes
(JSON nested thousands deep, lone surrogates, numbers past every limit, special files and symlink loops as outputs)
give one clear error and change nothing."""

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
from evalsuite.config.limits import RANGES
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


# --- issue 31: the shapes of hostile input: deep nesting, lone surrogates, huge numbers, special files, symlink
# loops. Each run ends with exit 0, 1 or 2, one error line when 2, no traceback, and nothing of the user's changed.

HOSTILE_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOOD_RESULTS = ROOT / "tests" / "data" / "results" / "good.json"


def nested(depth: int, inner: str) -> str:
    return "[" * depth + inner + "]" * depth


hostile_values = st.one_of(
    st.integers(1, 3000).map(lambda d: nested(d, '"x"')),  # around and past MAX_DEPTH and the recursion limit
    st.integers(1, 3000).map(lambda d: '{"k": ' * d + "1" + "}" * d),
    st.integers(4000, 6000).map(lambda n: "9" * n),  # around Python's 4,300-digit int limit
    st.sampled_from(['"\\ud800"', '"a\\udfffb"', '"\\ud83d\\ude00"', '"\\ud83d"', '{"\\udc00": 1}']),
    st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "1" + "0" * 400 + ".5"]),
)


def hostile_row(value: str, where: int) -> str:
    """A chat row with ``value`` (JSON text) as its user content, a message field, a tool-call's arguments (a JSON
    string) or an extra key."""
    user = '{"role": "user", "content": %s}'
    answer = '{"role": "assistant", "content": "OK"}'
    return [
        '{"messages": [' + user % value + ", " + answer + "]}",
        '{"messages": [{"role": "user", "content": "x", "extra": ' + value + "}, " + answer + "]}",
        '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [{"type": '
        '"function", "function": {"name": "f", "arguments": ' + json.dumps(value) + "}}]}]}",
        '{"meta": ' + value + ', "messages": [' + user % '"x"' + ", " + answer + "]}",
    ][where]


@HOSTILE_SETTINGS
@given(value=hostile_values, where=st.integers(0, 3), array=st.booleans(), good=st.integers(0, 2))
def test_hostile_json_rows_are_clear_errors(value: str, where: int, array: bool, good: int) -> None:
    rows = [json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "A"}]})] * good
    rows.append(hostile_row(value, where))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / ("d.json" if array else "d.jsonl")
        data.write_text("[" + ",\n".join(rows) + "]" if array else "\n".join(rows) + "\n", encoding="utf-8")
        rc, err = run(["lint", "--tokenizer", str(TINY), "--data", str(data)])
    event(f"rows: exit {rc}")
    assert rc in (0, 1, 2) and "Traceback" not in err
    assert rc != 2 or errors(err) == 1, err


out_of_range = st.one_of(st.integers(-10**40, 10**40), st.sampled_from([".nan", ".inf", "-.inf", "1e32", "9" * 5000]))
yaml_hostile = st.one_of(
    st.tuples(st.sampled_from(sorted(RANGES)), out_of_range).map(lambda kv: f"{kv[0]}: {kv[1]}"),
    st.integers(1, 3000).map(lambda d: "ignore: " + nested(d, "x")),
    st.sampled_from(["base_model: x\x00", 'wandb_name: "\\ud800"', "seed: " + "9" * 4400, "lora_r: \x07",
                     "special_tokens: {pad_token: \"\\udfff\"}"]),
)


@HOSTILE_SETTINGS
@given(line=yaml_hostile)
def test_hostile_yaml_configs_are_clear_errors(line: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "c.yaml"
        cfg.write_text(f"base_model: {TINY}\n{line}\n", encoding="utf-8")
        rc, err = run(["lint", str(cfg)])
    event(f"yaml: exit {rc}")
    assert rc in (0, 1, 2) and "Traceback" not in err
    assert rc != 2 or errors(err) == 1, err


def _make_target(folder: Path, kind: str) -> Path:
    """An output path of a hostile kind: special files (a real device node as root), links, others' files."""
    import os
    import socket
    import stat

    target = folder / "target"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(target))
        s.close()
    elif kind == "device":
        os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # the "full" device, made here, not /dev/full
    elif kind == "loop":
        target.symlink_to(folder / "other")
        (folder / "other").symlink_to(target)
    elif kind == "link-to-fifo":
        os.mkfifo(folder / "pipe")
        target.symlink_to(folder / "pipe")
    elif kind == "weights":
        target.write_bytes(b"\x08\0\0\0\0\0\0\0{}      ")
    elif kind == "folder":
        target.mkdir()
    elif kind == "under-a-file":
        target.write_text("mine", encoding="utf-8")
        return target / "out"
    return target


def _kinds(folder: Path) -> dict[str, int]:
    import os
    import stat

    return {p.name: stat.S_IFMT(os.lstat(p).st_mode) for p in folder.iterdir()}


@HOSTILE_SETTINGS
@given(kind=st.sampled_from(["fifo", "socket", "device", "loop", "link-to-fifo", "weights", "folder",
                             "under-a-file", "new"]),
       command=st.sampled_from(["report", "markdown", "baseline"]))
def test_hostile_output_paths_change_nothing(kind: str, command: str) -> None:
    import os

    if kind == "device" and os.geteuid() != 0:
        return  # only root can make a device node (and only root could replace one)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        target = _make_target(folder, kind)
        results = folder / "results.json"
        results.write_bytes(GOOD_RESULTS.read_bytes())
        argv = {"report": ["report", str(results), "-o", str(target)],
                "markdown": ["report", str(results), "-o", str(folder / "r.html"), "--markdown", str(target)],
                "baseline": ["baseline", "record", str(results), "-o", str(target), "--force"]}[command]
        before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.is_symlink()}
        types = _kinds(folder)
        rc, err = run(argv)
        event(f"{kind}: exit {rc}")
        assert "Traceback" not in err
        if kind == "new":
            assert rc == 0 and target.is_file()
            return
        assert rc == 2 and errors(err) == 1, err
        assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.is_symlink()} == before
        assert _kinds(folder) == types
