"""Issue 9: every bad input is one clear error (exit 2, the file, line or field named, no traceback), nothing hangs,
and nothing of the user's changes. The fast cases: config files, template rendering in lint and train, demo and
train options. Probe, output paths and training faults are in test_faults_probe.py and test_faults_train.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import ROOT, call_main, run_cli, time_limit, tree_digest

from evalsuite.chat import budget
from evalsuite.chat.named import named_template
from evalsuite.chat.template import TemplateRaised, render
from evalsuite.config.load import load_config
from evalsuite.config.yaml_lines import load_yaml
from evalsuite.errors import EvalsuiteError

TINY = ROOT / "fixtures" / "tiny-base"
ROWS = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "HI"}]}]
NESTED_LOOPS = "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"


def one_error(err: str) -> str:
    """The one ``error:`` line of stderr (libraries may print notices of their own around it)."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def data_file(tmp: Path, rows: list[dict[str, object]] | None = None) -> Path:
    p = tmp / "data.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in (ROWS if rows is None else rows)), encoding="utf-8")
    return p


def config_file(tmp: Path, body: str = "", **values: object) -> Path:
    data = data_file(tmp)
    lines = [f"base_model: {TINY}", *(f"{k}: {json.dumps(v)}" for k, v in values.items()),
             f"output_dir: {tmp / 'run'}", "datasets:", f"  - path: {data}", "    type: chat_template"]
    p = tmp / "config.yaml"
    p.write_text("\n".join(lines) + "\n" + body, encoding="utf-8")
    return p


# -- YAML ---------------------------------------------------------------------------------------------------------

def alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_without_hanging(tmp_path: Path) -> None:
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(f"base_model: {TINY}\n" + alias_bomb(9), encoding="utf-8")
    before = tree_digest(tmp_path)
    done = run_cli("lint", cfg, timeout=60)  # walked as a tree, 9**9 values: this hung before
    assert done.returncode == 2
    line = one_error(done.stderr)
    assert f"{cfg}:" in line and "aliases expand to more than 1,000,000 values" in line
    assert tree_digest(tmp_path) == before


def test_aliases_below_the_limit_are_built_once_and_shared(tmp_path: Path) -> None:
    cfg = tmp_path / "shared.yaml"
    cfg.write_text(alias_bomb(5), encoding="utf-8")  # 9**6 values once expanded
    with time_limit(60, "loading 6 levels of aliases"):
        data, lines = load_yaml(cfg)
    assert data["a5"][0] is data["a5"][8]  # one object per anchor, as yaml.safe_load builds it
    assert lines[("a5",)] == 6


def test_recursive_alias_is_one_located_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "rec.yaml"
    cfg.write_text("base_model: m\nfoo: &a [*a]\n", encoding="utf-8")
    assert call_main(["train", cfg]) == 2
    line = one_error(capsys.readouterr().err)
    assert f"{cfg}:2:" in line and "recursive alias" in line


@pytest.mark.parametrize("text,expected", [
    ("base_model: m\nlora_r: 16\nlora_r: 4\n", "c.yaml:3: lora_r: duplicate key (first given on line 2)"),
    ("base_model: m\ndatasets:\n  - path: a.jsonl\n    type: alpaca\n    path: b.jsonl\n",
     "c.yaml:5: path: duplicate key (first given on line 3)"),
])
def test_duplicate_keys_name_both_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                        expected: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text, encoding="utf-8")
    assert call_main(["train", cfg]) == 2
    assert expected in one_error(capsys.readouterr().err)
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN", "1e999", "1" + "0" * 400])
def test_non_finite_numbers_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"base_model: m\ndatasets: []\nlearning_rate: {value}\n", encoding="utf-8")
    assert call_main(["train", cfg]) == 2
    assert f"{cfg}:3: learning_rate: expected a positive number" in one_error(capsys.readouterr().err)


def test_finite_numbers_still_load(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("base_model: m\ndatasets: []\nlearning_rate: 2e-4\nlora_alpha: 32\n", encoding="utf-8")
    config = load_config(cfg)
    assert config.learning_rate == pytest.approx(2e-4) and config.lora_alpha == 32


# -- options ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["train", "CONFIG", "--max-steps", "0"], ["train", "CONFIG", "--max-steps", "-3"],
                                  ["demo", "--out", "OUT", "--max-steps", "0"]])
def test_non_positive_max_steps_is_a_usage_error(tmp_path: Path, argv: list[str]) -> None:
    cfg = config_file(tmp_path)
    before = tree_digest(tmp_path)
    args = [str(cfg) if a == "CONFIG" else str(tmp_path / "demo") if a == "OUT" else a for a in argv]
    done = run_cli(*args, timeout=120)
    assert done.returncode == 2
    assert "argument --max-steps: expected a positive integer" in done.stderr
    assert tree_digest(tmp_path) == before  # nothing trained, no run dir made


# -- templates: the render budget and runtime errors ---------------------------------------------------------------

BAD_TEMPLATES = [
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ("{{ range(10**9) }}", "OverflowError"),
    ("{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}", "recursed too deeply"),
    ("{{ 'x' * 3000000000 }}", "over the render budget"),
    ("{% for i in range(99999) %}{{ 'x' * 1000 }}{% endfor %}", "an output of length"),
    ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "over the render budget"),
    ("{{ 'x'.ljust(10**10) }}", "over the render budget"),
    ("{{ 'x'|center(10**10) }}", "over the render budget"),
    ("{{ ('x' * 100000)|replace('x', 'y' * 1000) }}", "over the render budget"),
    ("{{ 'x'.join(['y' * 1000000] * 100) }}", "over the render budget"),
    ("{{ '%9999999999d' % 1 }}", "over the render budget"),
    ("{{ '{:>{}}'.format(1, 10**10) }}", "over the render budget"),
    ("{{ 9 ** (9 ** 9) }}", "over the render budget"),
    ("{{ lipsum(10**9) }}", "over the render budget"),
]


@pytest.mark.parametrize("source,expected", BAD_TEMPLATES, ids=[s[:30] for s, _ in BAD_TEMPLATES])
def test_template_runtime_errors_are_one_error_naming_the_template(source: str, expected: str) -> None:
    with time_limit(30, "a render"), pytest.raises(TemplateRaised) as err:
        render(named_template(source, "/x/t.jinja", is_file=True), ROWS[0]["messages"])  # type: ignore[arg-type]
    assert "chat template /x/t.jinja" in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize("source", [
    NESTED_LOOPS,
    "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
])
def test_endless_templates_stop_at_the_time_budget(monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    monkeypatch.setattr(budget, "SECONDS", 0.5)
    with time_limit(30, "a render"), pytest.raises(TemplateRaised, match=r"ran longer than 0\.5 s, the render budget"):
        render(source, ROWS[0]["messages"])  # type: ignore[arg-type]


def lint_with(tmp: Path, template: str, name: str = "t.jinja", timeout: float = 120) -> tuple[int, str]:
    """Lint one row with ``template``; asserts the user's files are unchanged."""
    t = tmp / name
    t.write_text(template, encoding="utf-8")
    data = data_file(tmp)
    before = tree_digest(tmp)
    done = run_cli("lint", "--tokenizer", TINY, "--data", data, "--chat-template", t, timeout=timeout,
                   env={"EVALSUITE_RENDER_SECONDS": "2"})
    assert tree_digest(tmp) == before
    return done.returncode, one_error(done.stderr)


def test_lint_nested_loops_end_in_one_error_naming_the_template(tmp_path: Path) -> None:
    rc, line = lint_with(tmp_path, NESTED_LOOPS)
    assert rc == 2 and f"chat template {tmp_path / 't.jinja'} ran longer than 2 s" in line
    assert "data.jsonl:1" in line  # the row being rendered


@pytest.mark.parametrize("source,expected", [BAD_TEMPLATES[0], BAD_TEMPLATES[2], BAD_TEMPLATES[3]])
def test_lint_template_runtime_errors(tmp_path: Path, source: str, expected: str) -> None:
    rc, line = lint_with(tmp_path, source, timeout=60)  # 'x' * 3e9 in C: only a subprocess timeout catches it
    assert rc == 2 and expected in line and str(tmp_path / "t.jinja") in line


def test_template_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    rc, line = lint_with(tmp_path, "{% for m in messages %}\n{{ m.content }\n{% endfor %}")
    assert rc == 2 and f"{tmp_path / 't.jinja'}:2: chat template syntax error" in line


def test_inline_template_in_a_config_is_named_by_its_key(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, chat_template="jinja", chat_template_jinja="{{ 1 / 0 }}{{ messages }}")
    done = run_cli("lint", cfg, timeout=120)
    assert done.returncode == 2
    line = one_error(done.stderr)
    assert "chat_template_jinja" in line and f"{cfg}:" in line and "ZeroDivisionError" in line


def test_non_utf8_template_file(tmp_path: Path) -> None:
    t = tmp_path / "latin1.jinja"
    t.write_bytes("{{ 'é' }}".encode("latin-1"))
    done = run_cli("lint", "--tokenizer", TINY, "--data", data_file(tmp_path), "--chat-template", t, timeout=120)
    assert done.returncode == 2 and f"{t}: --chat-template is not UTF-8 text" in one_error(done.stderr)


@pytest.mark.parametrize("source,expected", [(NESTED_LOOPS, "ran longer than 2 s"), BAD_TEMPLATES[0]],
                         ids=["endless", "zero-division"])
def test_train_with_a_broken_template_stops_and_leaves_no_folder(tmp_path: Path, source: str, expected: str) -> None:
    template = tmp_path / "loops.jinja"
    template.write_text(source, encoding="utf-8")
    cfg = config_file(tmp_path, chat_template="jinja", chat_template_jinja=str(template))
    before = tree_digest(cfg, template, tmp_path / "data.jsonl")
    done = run_cli("train", cfg, timeout=300, env={"EVALSUITE_RENDER_SECONDS": "2"})
    assert done.returncode == 2
    line = one_error(done.stderr)
    assert f"chat template {template}" in line and expected in line
    assert not (tmp_path / "run").exists()  # the failed run left no empty output folder
    assert tree_digest(cfg, template, tmp_path / "data.jsonl") == before


# -- data ---------------------------------------------------------------------------------------------------------

def test_empty_data_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config_file(tmp_path)
    (tmp_path / "data.jsonl").write_text("", encoding="utf-8")
    assert call_main(["lint", cfg]) == 2
    assert f"{tmp_path / 'data.jsonl'}: no rows" in one_error(capsys.readouterr().err)


# -- demo ---------------------------------------------------------------------------------------------------------

def test_demo_refuses_a_folder_it_did_not_create(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "mine"
    (run / "checkpoint-100").mkdir(parents=True)
    (run / "checkpoint-100" / "trainer_state.json").write_text("{}", encoding="utf-8")
    (run / "evalsuite_manifest.json").write_text("{}", encoding="utf-8")
    (run / "notes.txt").write_text("mine", encoding="utf-8")
    before = tree_digest(run)
    assert call_main(["demo", "--out", run]) == 2
    line = one_error(capsys.readouterr().err)
    assert f"{run}: not empty and not made by `evalsuite demo`" in line and "--overwrite" not in line
    assert tree_digest(run) == before


@pytest.mark.parametrize("model", ["tiny", "smollm2"])
def test_demo_default_out_is_not_the_demo_configs_output_dir(model: str) -> None:
    from evalsuite.cli import build_parser
    from evalsuite.demo import demo_config_path, demo_paths

    default, _ = demo_paths(build_parser().parse_args(["demo", "--model", model]))
    assert Path(load_config(demo_config_path(model)).output_dir).resolve() != default.resolve()


def test_demo_marker_lets_the_demo_clear_only_its_own_folder(tmp_path: Path) -> None:
    from evalsuite.demo import claim_demo_dir
    from evalsuite.rundir.contract import DEMO_MARKER

    out = tmp_path / "demo"
    claim_demo_dir(out)
    assert (out / DEMO_MARKER).is_file()
    (out / "checkpoint-3").mkdir()
    claim_demo_dir(out)  # an earlier demo's folder: cleared, marker kept
    assert [p.name for p in out.iterdir()] == [DEMO_MARKER]
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(EvalsuiteError, match="is a file"):
        claim_demo_dir(tmp_path / "file")
