"""`evalsuite gate` / `evalsuite baseline record`: exit codes, declared gates, baseline provenance."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import call_main, run_cli

from evalsuite.errors import EvalsuiteError
from evalsuite.gates.declared import declared_gates, load_yaml_config
from evalsuite.results.io import load_results

DATA = Path(__file__).parent / "data" / "results"
GOOD, BAD, RERUN = DATA / "good.json", DATA / "bad.json", DATA / "good_rerun.json"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = call_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _no_project_gates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from an empty folder so the repo's own pyproject.toml is not picked up."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


def test_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "gate", str(RERUN), "--baseline", str(GOOD),
                       "--gate", "squad.f1: -1.5", "--gate", "uppercase-echo.accuracy: -2%")
    assert code == 0, out
    assert out.count("PASS ") == 2 and "gates: 2 passed, 0 failed" in out
    code, out, _ = run(capsys, "gate", str(BAD), "--baseline", str(GOOD), "--gate", "squad.f1: -1.5")
    assert code == 1
    assert out.startswith("FAIL squad.f1: -1.5 [bad vs baseline good]") and "pass->fail squad[q" in out
    code, _, err = run(capsys, "gate", str(GOOD), "--gate", "squad.f1 >> 3")
    assert code == 2 and 'gate "squad.f1 >> 3": expected an operator' in err
    code, _, err = run(capsys, "gate", str(GOOD), "--gate", "squad.f2 >= 1")
    assert code == 2 and "(have: accuracy, exact_match, f1)" in err
    code, _, err = run(capsys, "gate", str(DATA / "nope.json"), "--gate", "squad.f1 >= 1")
    assert code == 2 and "nope.json: no such results file" in err
    code, _, err = run(capsys, "gate", str(GOOD))
    assert code == 2 and "no gates to apply" in err
    code, _, err = run(capsys, "gate", str(GOOD), "--gate", "squad.f1 >= 1", "--alpha", "2")
    assert code == 2 and "--alpha: expected a significance level" in err


def test_console_script_exit_code_and_no_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    data = json.loads(GOOD.read_text())
    data["samples"][12]["finish_reason"] = "foo"
    broken.write_text(json.dumps(data))
    proc = run_cli("gate", broken, "--gate", "squad.f1 >= 1")
    assert proc.returncode == 2
    assert "samples[12].finish_reason: expected one of eos, stop-string, max-tokens, new-turn" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_pyproject_list_table_baseline_and_override(capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(GOOD, "base.json")
    Path("pyproject.toml").write_text(
        '[tool.evalsuite]\nbaseline = "base.json"\nalpha = 0.05\n'
        '[tool.evalsuite.gates]\n"squad.exact_match" = ">= 60"\nsquad.f1 = ["-1.5", ">= 10"]\n'
        '"runaway-turns.rate" = "+0.05"\n')
    config = declared_gates()
    assert [g.expr for g in config.gates] == ["squad.exact_match >= 60", "squad.f1: -1.5", "squad.f1 >= 10",
                                              "runaway-turns.rate: +0.05"]
    code, out, _ = run(capsys, "gate", str(BAD))  # baseline comes from pyproject
    assert code == 1 and out.count("FAIL") == 3, out
    # --gate replaces the declared regression gates on squad.f1 and keeps the rest.
    code, out, _ = run(capsys, "gate", str(BAD), "--gate", "squad.f1: -50",
                       "--gate", "squad.exact_match >= 40", "--gate", "runaway-turns.rate: +0.5")
    assert code == 0, out
    assert "squad.f1 >= 10" in out and "squad.f1: -1.5" not in out


def test_pyproject_errors() -> None:
    Path("pyproject.toml").write_text('[tool.evalsuite]\ngates = ["squad.f1 >= 1", "squad.f1 >> 3"]\n')
    with pytest.raises(EvalsuiteError, match=r'pyproject.toml: tool.evalsuite.gates\[1\]: gate "squad'):
        declared_gates()
    Path("pyproject.toml").write_text('[tool.evalsuite.gates]\n"squad.f1" = 60\n')
    with pytest.raises(EvalsuiteError, match=r'tool.evalsuite.gates.squad.f1: expected the comparison as a'):
        declared_gates()
    Path("pyproject.toml").write_text('[tool.evalsuite]\nalpha = 2\n')
    with pytest.raises(EvalsuiteError, match=r"tool\.evalsuite\.alpha: expected a significance level"):
        declared_gates()


def test_yaml_config_gates_with_lines(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("base_model: tiny\ngates:\n  - squad.f1 >= 60\n  - squad.f1 >> 3\n")
    with pytest.raises(EvalsuiteError, match=r'config.yaml:4: gates\[1\]: gate "squad.f1 >> 3"'):
        load_yaml_config(cfg)
    cfg.write_text("gates:\n  squad.f1: '-1.5'\n  uppercase-echo.accuracy: ['>= 0.9', '-2%']\n")
    assert [g.expr for g in load_yaml_config(cfg).gates] == [
        "squad.f1: -1.5", "uppercase-echo.accuracy >= 0.9", "uppercase-echo.accuracy: -2%"]


# --- baseline record -------------------------------------------------------------------------

def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(repo)})


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "train.py").write_text("print('v1')\n")
    _git(root, "add", "train.py")
    _git(root, "commit", "-q", "-m", "init")
    monkeypatch.chdir(root)
    return root


def test_baseline_record_carries_provenance(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "baseline", "record", str(GOOD), "-o", "baselines/main.json")
    assert code == 0 and out.startswith("recorded baseline baselines/main.json")
    written = load_results(repo / "baselines" / "main.json")
    assert written.baseline is not None
    assert written.baseline["manifest_digests"] == {a.name: a.manifest_digest for a in written.adapters}
    assert written.baseline["manifest_digests"]["good"].startswith("sha256:")
    assert written.baseline["git"]["dirty"] is False and len(written.baseline["git"]["commit"]) == 40
    assert written.samples == load_results(GOOD).samples
    # The baseline gates like the results it came from.
    code, out, _ = run(capsys, "gate", str(GOOD), "--baseline", "baselines/main.json",
                       "--gate", "squad.f1: -0")
    assert code == 0 and out.startswith("baseline baselines/main.json from ")


def test_baseline_record_refuses_dirty_tree(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "baseline", "record", str(GOOD), "-o", "baseline.json")
    before = (repo / "baseline.json").read_bytes()
    (repo / "train.py").write_text("print('v2')\n")  # uncommitted change to a tracked file
    code, _, err = run(capsys, "baseline", "record", str(BAD), "-o", "baseline.json")
    assert code == 2 and "refusing to record a baseline from a dirty git tree" in err
    assert (repo / "baseline.json").read_bytes() == before  # untouched
    assert sorted(p.name for p in repo.iterdir()) == [".git", "baseline.json", "train.py"]  # no temp left
    code, _, _ = run(capsys, "baseline", "record", str(BAD), "-o", "baseline.json", "--force")
    assert code == 0
    forced = load_results(repo / "baseline.json").baseline
    assert forced is not None and forced["forced"] is True and forced["git"]["dirty"] is True


def test_baseline_record_default_output_from_pyproject(repo: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "pyproject.toml").write_text('[tool.evalsuite]\nbaseline = "ci/baseline.json"\n')
    code, _, _ = run(capsys, "baseline", "record", str(GOOD))  # untracked pyproject: tree still clean
    assert code == 0 and (repo / "ci" / "baseline.json").is_file()
    bad_input = repo / "bad.json"
    bad_input.write_text("{}")
    code, _, err = run(capsys, "baseline", "record", str(bad_input), "-o", "x.json")
    assert code == 2 and "schema_version: missing" in err and not (repo / "x.json").exists()
