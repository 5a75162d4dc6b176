"""Issue 9, probing: output paths (never into the probed run dir, never over an input), a full disk after the
generations (kept in the cache, and the message says so), bad options blamed on the option, broken templates and
weights, devices that do not exist, and a malicious pickle. One clear error each, in `evalsuite probe` and in the
pytest plugin, and nothing of the user's changed."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import call_main, run_cli, tree_digest

from evalsuite.results.io import load_results

pytestmark = pytest.mark.slow
NESTED_LOOPS = "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def small_battery(tmp: Path) -> Path:
    battery = tmp / "two.yaml"
    battery.write_text("name: two\nscorer: exact_match\nexpect: upper\nmax_new_tokens: 8\ncases: [hello, world]\n",
                       encoding="utf-8")
    return battery


@pytest.fixture
def run(demo_adapter: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(demo_adapter, dst)
    return dst


def probe(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str]:
    rc = call_main(["probe", *args])
    return rc, capsys.readouterr().err


def plugin(tmp: Path, *args: Any, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``pytest -m probes --adapter ...`` in a fresh project folder; returns the exit code and all output."""
    project = tmp / "project"
    project.mkdir(exist_ok=True)
    done = run_cli("-p", "no:cacheprovider", "-m", "probes", *args, module="pytest", cwd=project, env=env,
                   timeout=600)
    out = done.stdout + done.stderr
    assert "INTERNALERROR" not in out and "Traceback" not in out, out[-3000:]
    return done.returncode, out


def test_out_inside_the_probed_run_dir_is_refused(run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    battery = small_battery(tmp_path)
    (tmp_path / "a-file").write_text("mine", encoding="utf-8")
    before = tree_digest(tmp_path)
    for out, needle in [(run / "adapter_model.safetensors", "inside the run dir"), (run, "is a folder"),
                        (tmp_path / "a-file" / "r.json", "which is a file"), (battery, "is one of the inputs")]:
        rc, err = probe(capsys, run, "--battery", battery, "--out", out)
        assert rc == 2 and str(out) in one_error(err) and needle in one_error(err), err
    assert tree_digest(tmp_path) == before


def test_plugin_probe_out_inside_the_run_dir_is_a_usage_error(run: Path, tmp_path: Path) -> None:
    before = tree_digest(run)
    rc, out = plugin(tmp_path, "--adapter", run, "--battery", small_battery(tmp_path), "--probe-out",
                     run / "adapter_model.safetensors")
    assert rc == 4 and "inside the run dir" in out
    assert tree_digest(run) == before


def test_full_disk_after_generating_keeps_the_generations(run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import evalsuite.results.io as io

    out = tmp_path / "results.json"
    real = io.atomic_write_text

    def full(path: Any, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(io, "atomic_write_text", full)
    rc, err = probe(capsys, run, "--battery", small_battery(tmp_path), "--out", out)
    line = one_error(err)
    assert rc == 2 and f"{out}: No space left on device" in line and "generation cache" in line
    assert not out.exists()
    monkeypatch.setattr(io, "atomic_write_text", real)
    rc, _ = probe(capsys, run, "--battery", small_battery(tmp_path), "--out", out)
    settings = load_results(out).engine.settings
    assert rc in (0, 1) and settings["generated"] == 0 and settings["cached"] == 2  # nothing generated again


@pytest.mark.parametrize("args,needle", [
    (["--max-batch-seconds", "-1"], "--max-batch-seconds: expected seconds >= 0 (0: no cap), got -1.0"),
    (["--squad-n", "-5"], "--squad-n: expected 0 (all) or a positive integer, got -5"),
    (["--device", "foo"], "--device: expected cpu, cuda or cuda:N, got 'foo'"),
])
def test_bad_options_are_blamed_on_the_option(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              args: list[str], needle: str) -> None:
    battery = "squad" if "--squad-n" in args else small_battery(tmp_path)
    before = tree_digest(tmp_path)
    rc, err = probe(capsys, run, "--battery", battery, *args,
                    "--out", tmp_path / "r.json")
    assert rc == 2 and needle in one_error(err)
    assert "squad.yaml" not in one_error(err)
    assert tree_digest(tmp_path) == before


def test_device_cuda_without_cuda(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rc, err = probe(capsys, run, "--battery", small_battery(tmp_path), "--device", "cuda", "--out",
                    tmp_path / "r.json")
    assert rc == 2 and "--device cuda: CUDA is not available" in one_error(err)
    assert not (tmp_path / "r.json").exists()


def test_explicit_squad_without_a_dataset(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSUITE_FIXTURES", str(tmp_path / "no-fixtures"))
    rc, err = probe(capsys, run, "--battery", "squad", "--out", tmp_path / "r.json")
    assert rc == 2 and "--squad-dataset" in one_error(err)
    rc, err = probe(capsys, run, "--battery", "squad", "--squad-dataset", tmp_path / "missing.json", "--out",
                    tmp_path / "r.json")
    assert rc == 2 and str(tmp_path / "missing.json") in one_error(err)


def test_truncated_base_weights(run: Path, tiny_base: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    weights = base / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    battery = small_battery(tmp_path)
    before = tree_digest(tmp_path)
    rc, err = probe(capsys, run, "--base-model", base, "--battery", battery, "--out",
                    tmp_path / "r.json")
    assert rc == 2 and f"{weights}: corrupt base model weights (tensor data truncated)" in one_error(err)
    assert tree_digest(tmp_path) == before


class _Payload:
    """Unpickling this runs ``touch MARKER``: what a malicious adapter_model.bin does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_with_allow_pickle_runs_nothing_and_is_one_error(run: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "PWNED"
    (run / "adapter_model.safetensors").unlink()
    (run / "adapter_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    rc, err = probe(capsys, run, "--allow-pickle", "--battery", small_battery(tmp_path), "--out",
                    tmp_path / "r.json")
    assert rc == 2 and str(run) in one_error(err)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["probe", "plugin"])
def test_endless_run_dir_template_is_one_error(run: Path, tmp_path: Path, where: str) -> None:
    (run / "chat_template.jinja").write_text(NESTED_LOOPS, encoding="utf-8")
    before = tree_digest(run)
    env = {"EVALSUITE_RENDER_SECONDS": "2"}
    if where == "probe":
        done = run_cli("probe", run, "--battery", small_battery(tmp_path), "--out", tmp_path / "r.json", env=env,
                       timeout=600)
        rc, out = done.returncode, one_error(done.stderr)
        assert rc == 2
    else:
        rc, out = plugin(tmp_path, "--adapter", run, "--battery", small_battery(tmp_path), env=env)
        assert rc == 4
    assert f"chat template {run / 'chat_template.jinja'} ran longer than 2 s" in out
    assert tree_digest(run) == before and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("where", ["probe", "plugin"])
def test_non_utf8_run_dir_template_is_one_error(run: Path, tmp_path: Path, where: str) -> None:
    (run / "chat_template.jinja").write_bytes("{{ 'é' }}".encode("latin-1"))
    if where == "probe":
        done = run_cli("probe", run, "--battery", small_battery(tmp_path), "--out", tmp_path / "r.json",
                       timeout=600)
        rc, out = done.returncode, one_error(done.stderr)
        assert rc == 2
    else:
        rc, out = plugin(tmp_path, "--adapter", run, "--battery", small_battery(tmp_path))
        assert rc == 4
    assert f"{run / 'chat_template.jinja'}: chat template is not UTF-8 text" in out


@pytest.mark.parametrize("source,expected", [("{{ 1 / 0 }}", "ZeroDivisionError"),
                                             ("{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}", "recursed"),
                                             ("{{ 'x' * 3000000000 }}", "over the render budget")])
def test_plugin_template_runtime_errors_are_usage_errors(run: Path, tmp_path: Path, source: str,
                                                         expected: str) -> None:
    (run / "chat_template.jinja").write_text(source, encoding="utf-8")
    rc, out = plugin(tmp_path, "--adapter", run, "--battery", small_battery(tmp_path))
    assert rc == 4 and expected in out and str(run / "chat_template.jinja") in out
