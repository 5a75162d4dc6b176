"""Issue 9, output paths: an output that is a folder, under a file, unwritable, one of the inputs or inside a probed
run dir is refused before any work, in every command that writes one; a full disk is one error, and what was
computed is kept (probe: the generation cache, and the message says so)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from cli_helpers import call_main, tree_digest

from evalsuite.errors import EvalsuiteError
from evalsuite.files import check_output_path, write_failure

DATA = Path(__file__).parent / "data" / "results"
GOOD = DATA / "good.json"


def bad_outputs(tmp: Path, unwritable: Path) -> list[tuple[Path, str]]:
    (tmp / "a-folder").mkdir()
    (tmp / "a-file").write_text("mine", encoding="utf-8")
    return [(tmp / "a-folder", "is a folder"), (tmp / "a-file" / "out.json", "which is a file"),
            (unwritable / "out.json", f"in {unwritable}")]


def test_check_output_path_refuses_and_creates_nothing(tmp_path: Path, unwritable_dir: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    cases = [*bad_outputs(tmp_path, unwritable_dir), (GOOD, "is one of the inputs"),
             (run / "adapter_model.safetensors", "inside the run dir"), (run / "sub" / "r.json", "inside the run dir")]
    before = tree_digest(tmp_path)
    for path, needle in cases:
        with pytest.raises(EvalsuiteError, match=needle):
            check_output_path(path, inputs=[GOOD], protected_dirs=[run])
    assert tree_digest(tmp_path) == before
    assert check_output_path(tmp_path / "new" / "deeper" / "r.json") == tmp_path / "new" / "deeper" / "r.json"
    assert not (tmp_path / "new").exists()  # checked, not created


def test_write_failure_recognises_full_disks_and_torch_writers() -> None:
    assert write_failure(OSError(errno.ENOSPC, "x", "/d/f")) == "/d/f: No space left on device"
    assert write_failure(OSError(errno.EROFS, "x")) == "Read-only file system"
    assert write_failure(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"))
    assert write_failure(OSError(errno.ENOENT, "x", "/d/f")) is None  # a missing input is not a write failure
    assert write_failure(RuntimeError("CUDA out of memory")) is None


@pytest.mark.parametrize("command", ["baseline", "report", "markdown"])
def test_bad_outputs_are_refused_by_baseline_and_report(tmp_path: Path, unwritable_dir: Path, command: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.json"
    shutil.copy(GOOD, results)
    cases = [*bad_outputs(tmp_path, unwritable_dir), (results, "is one of the inputs")]
    before = tree_digest(tmp_path)
    for out, needle in cases:
        argv = {"baseline": ["baseline", "record", results, "-o", out, "--force"],
                "report": ["report", results, "-o", out],
                "markdown": ["report", results, "-o", tmp_path / "r.html", "--markdown", out]}[command]
        assert call_main(argv) == 2, out
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and str(out) in lines[0] and needle in lines[0], err
    assert tree_digest(tmp_path) == before


def test_report_refuses_one_file_for_both_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.txt"
    assert call_main(["report", GOOD, "-o", out, "--markdown", out]) == 2
    assert "given as both the HTML and the Markdown report" in capsys.readouterr().err
    assert not out.exists()


def test_disk_full_while_writing_a_report_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The atomic writer's flush hits a full disk: one error naming the file, no temp file left behind."""
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert call_main(["report", GOOD, "-o", tmp_path / "r.html"]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'r.html'}: No space left on device" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kept", ["cache", "side file", "nowhere"])
def test_probe_results_on_a_full_disk_say_where_the_generations_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    kept: str) -> None:
    """Minutes of generation are not lost to a full disk: the cache holds them (rerun to write the results), else
    the results go to a side file in the temp folder; the one error says which."""
    import tempfile

    import evalsuite.results.io as io
    from evalsuite.probe.runner import ProbeRun, write_run
    from evalsuite.results.io import load_results

    results, out, side_dir = load_results(GOOD), tmp_path / "results.json", tmp_path / "tmp"
    side_dir.mkdir()
    real = io.atomic_write_text

    def full(path: str | os.PathLike[str], text: str) -> None:
        if Path(path) == out or kept == "nowhere":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, text)

    monkeypatch.setattr(io, "atomic_write_text", full)
    monkeypatch.setattr(tempfile, "tempdir", str(side_dir))
    run = ProbeRun(results, None, 2, 0, tmp_path / "cache" if kept == "cache" else None)  # type: ignore[arg-type]
    with pytest.raises(EvalsuiteError) as err:
        write_run(run, out)
    message = str(err.value)
    assert message.startswith(f"{out}: No space left on device; the results were not written. ")
    assert not out.exists()
    if kept == "cache":
        assert f"kept in the generation cache ({tmp_path / 'cache'})" in message and not list(side_dir.iterdir())
    elif kept == "side file":
        side = Path(message.rsplit("They are kept in ", 1)[1])
        assert side.parent == side_dir and load_results(side).to_dict() == results.to_dict()
    else:
        assert "could not be kept anywhere" in message and not list(side_dir.iterdir())
