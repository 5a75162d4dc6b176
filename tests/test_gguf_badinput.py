"""Bad input to the GGUF paths: not a GGUF, a truncated GGUF, no llama.cpp for --gguf, llama-cpp-python absent. Each
is one line on stderr, exit 2, no traceback. The header reader is checked on files cut at every kind of boundary."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from gguf_support import evalsuite

from evalsuite.errors import EvalsuiteError
from evalsuite.gguf.reader import read_gguf


def _string(s: str) -> bytes:
    data = s.encode()
    return struct.pack("<Q", len(data)) + data


def tiny_gguf(path: Path, with_tensor: bool = True) -> Path:
    """A minimal valid GGUF v3: two metadata keys (a string, an int array) and one f32 tensor of 4 values."""
    kv = _string("general.architecture") + struct.pack("<I", 8) + _string("llama")
    kv += _string("tokenizer.ggml.token_type") + struct.pack("<I", 9) + struct.pack("<IQ", 5, 3)
    kv += struct.pack("<3i", 1, 3, 6)
    tensors = _string("w") + struct.pack("<I", 1) + struct.pack("<Q", 4) + struct.pack("<I", 0) + struct.pack("<Q", 0)
    n_tensors = 1 if with_tensor else 0
    head = b"GGUF" + struct.pack("<IQQ", 3, n_tensors, 2) + kv + (tensors if with_tensor else b"")
    pad = b"\0" * (-len(head) % 32)
    path.write_bytes(head + pad + (struct.pack("<4f", 1, 2, 3, 4) if with_tensor else b""))
    return path


def test_reader_reads_metadata_and_tensors(tmp_path: Path) -> None:
    g = read_gguf(tiny_gguf(tmp_path / "t.gguf"))
    assert g.version == 3 and g.architecture == "llama"
    assert g.metadata["tokenizer.ggml.token_type"] == [1, 3, 6]
    assert g.tensors["w"].shape == (4,)


def test_every_truncation_of_a_gguf_is_one_clear_error(tmp_path: Path) -> None:
    whole = tiny_gguf(tmp_path / "t.gguf").read_bytes()
    for n in range(len(whole)):
        cut = tmp_path / "cut.gguf"
        cut.write_bytes(whole[:n])
        with pytest.raises(EvalsuiteError) as e:
            read_gguf(cut)
        assert str(cut) in str(e.value)
        assert ("truncated" in str(e.value)) or n < 4, (n, str(e.value))


def test_not_a_gguf_and_truncated_gguf_exit_2_with_one_line(tmp_path: Path, demo_adapter: Path) -> None:
    text = tmp_path / "model.gguf"
    text.write_text("this is not a model\n")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf(tmp_path / "t.gguf").read_bytes()[:-3])
    for path, words in ((text, "not a GGUF file"), (cut, "truncated GGUF")):
        for argv in (["drift", str(demo_adapter), str(path)], ["probe", str(demo_adapter), str(path)]):
            done = evalsuite(*argv)
            assert done.returncode == 2, (argv, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and words in lines[0] and str(path) in lines[0], done.stderr
            assert "Traceback" not in done.stderr


def test_export_gguf_without_llama_cpp_is_one_line(tmp_path: Path, demo_adapter: Path) -> None:
    done = evalsuite("export", str(demo_adapter), "--gguf", str(tmp_path / "m.gguf"), env={"LLAMA_CPP_DIR": ""})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--llama-cpp DIR" in lines[0] and "LLAMA_CPP_DIR" in lines[0], done.stderr
    assert not (tmp_path / "m.gguf").exists()
    done = evalsuite("export", str(demo_adapter), "--gguf", str(tmp_path / "m.gguf"), "--llama-cpp", str(tmp_path))
    assert done.returncode == 2 and "no convert_hf_to_gguf.py" in done.stderr and len(done.stderr.splitlines()) == 1


def test_export_refuses_to_overwrite(tmp_path: Path, demo_adapter: Path) -> None:
    existing = tmp_path / "m.gguf"
    existing.write_bytes(b"mine")
    done = evalsuite("export", str(demo_adapter), "--gguf", str(existing), "--llama-cpp", str(tmp_path))
    assert done.returncode == 2 and "--overwrite" in done.stderr
    assert existing.read_bytes() == b"mine"
    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    done = evalsuite("export", str(demo_adapter), "--merged", str(folder))
    assert done.returncode == 2 and "not empty" in done.stderr
    assert (folder / "notes.txt").read_text() == "keep"


def test_llama_cpp_python_absent_is_one_line(tmp_path: Path, demo_adapter: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "llama_cpp.py").write_text("raise ImportError('blocked for this test')\n")
    gguf = tiny_gguf(tmp_path / "t.gguf")
    for argv in (["drift", str(demo_adapter), str(gguf)], ["probe", str(demo_adapter), str(gguf)]):
        done = evalsuite(*argv, env={"PYTHONPATH": str(blocker)})
        assert done.returncode == 2, (argv, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "llama-cpp-python is not installed" in lines[0], done.stderr
        assert "evalsuite[gguf]" in lines[0]


def test_gguf_column_options_are_checked_before_anything_loads(tmp_path: Path) -> None:
    gguf = tiny_gguf(tmp_path / "t.gguf")
    cases = ((["probe", str(gguf), "--gguf-template", "mine"], "--gguf-template: expected one of embedded, training"),
             (["probe", str(gguf), "--base"], "--base: a GGUF or endpoint column has no base model"),
             (["probe", str(gguf), "--gguf-template", "training"], "--gguf-template training needs a run dir"),
             (["probe", str(tmp_path / "absent.gguf")], "no such GGUF file"))
    for argv, words in cases:
        done = evalsuite(*argv)
        assert done.returncode == 2, (argv, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (argv, done.stderr)


def test_columns_split_into_run_dirs_and_gguf_files_in_order() -> None:
    from evalsuite.probe.gguf_target import split_columns

    paths = [Path("runs/a"), Path("b.gguf"), Path("runs/c"), Path("D.GGUF")]
    assert split_columns(paths) == ([Path("runs/a"), Path("runs/c")], [Path("b.gguf"), Path("D.GGUF")])
