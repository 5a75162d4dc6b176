"""Issue 31, losses: an output replaces only a regular file of its own kind, never a special file (a device node, a
FIFO, a socket), never an input or anything inside one; a symlink loop is one error; `export --merged --overwrite`
replaces only an earlier export and never writes into the folders it reads; a full disk leaves nothing that looks
like a finished model. Every refusal: exit 2, one error line, no traceback, every file byte-identical.

We run as root, whom permissions do not stop, so the special files are real: each test makes its own device node
(``mknod``, the kernel's "full" device, 1:7) in its temp folder rather than risking the machine's /dev/full."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
from pathlib import Path

import pytest
from cli_helpers import ROOT, call_main, tree_digest

from evalsuite.errors import EvalsuiteError
from evalsuite.files import atomic_write_text, check_output_path, special_file, write_failure

GOOD = Path(__file__).parent / "data" / "results" / "good.json"
TINY = ROOT / "fixtures" / "tiny-base"


def special_files(folder: Path) -> dict[str, Path]:
    """A FIFO, a socket and (as root) a character device, made in ``folder``."""
    made = {"fifo": folder / "fifo", "socket": folder / "sock"}
    os.mkfifo(made["fifo"])
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(made["socket"]))
    sock.close()
    if os.geteuid() == 0:
        made["device"] = folder / "full"
        os.mknod(made["device"], 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    return made


def kinds(folder: Path) -> dict[str, int]:
    """The file type of every entry (a special file replaced by a regular one changes this)."""
    return {p.name: stat.S_IFMT(os.lstat(p).st_mode) for p in folder.iterdir()}


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_special_files_are_named_and_refused_by_the_check_and_the_writer(tmp_path: Path) -> None:
    made = special_files(tmp_path)
    before = kinds(tmp_path)
    expected = {"fifo": "FIFO", "socket": "socket", "device": "character device"}
    for name, path in made.items():
        assert expected[name] in (special_file(path) or "")
        with pytest.raises(EvalsuiteError, match=f"{expected[name]}.*refusing to write"):
            check_output_path(path, "report file")
        with pytest.raises(EvalsuiteError, match="not a regular file"):
            atomic_write_text(path, "x")  # the writer refuses too, whatever called it
    link = tmp_path / "to-fifo"
    link.symlink_to(made["fifo"])
    with pytest.raises(EvalsuiteError, match="FIFO"):
        check_output_path(link)
    assert kinds(tmp_path) == {**before, "to-fifo": stat.S_IFLNK}
    assert special_file(tmp_path) is None and special_file(GOOD) is None and special_file(tmp_path / "no") is None


def test_symlink_loops_as_outputs_and_inputs_are_one_error(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(EvalsuiteError, match="symlink loop"):
        check_output_path(tmp_path / "a")
    with pytest.raises(EvalsuiteError, match="symlink loop"):
        check_output_path(tmp_path / "out.json", inputs=[tmp_path / "a"])


@pytest.mark.parametrize(("kind", "content", "ok"), [
    ("html", b"\n\n<!DOCTYPE html>\n<html>", True), ("html", b"<html lang=en>", True), ("html", b"# notes", False),
    ("markdown", b"# evalsuite report\n", True), ("markdown", b"x\0y", False),
    ("results", b'{\n "schema_version": 2, "results": {}}', True), ("results", b'{"a": 1}', False),
    ("results", b"PK\x03\x04", False), ("gguf", b"GGUF\x03\x00", True), ("gguf", b"GGML", False),
    ("html", b"", True), ("results", b"  \n", True),  # an empty file holds nothing to lose
])
def test_an_existing_file_is_replaced_only_by_an_output_of_its_kind(tmp_path: Path, kind: str, content: bytes,
                                                                    ok: bool) -> None:
    target = tmp_path / "existing.bin"
    target.write_bytes(content)
    if ok:
        assert check_output_path(target, kind=kind) == target  # type: ignore[arg-type]
    else:
        with pytest.raises(EvalsuiteError, match=r"exists and is not .*refusing to replace it"):
            check_output_path(target, kind=kind)  # type: ignore[arg-type]
    assert target.read_bytes() == content


def test_a_markdown_file_by_its_name(tmp_path: Path) -> None:
    for name, ok in (("notes.md", True), ("notes.txt", True), ("config.json", False)):
        (tmp_path / name).write_text('{"lora_r": 8}\n', encoding="utf-8")
        if ok:
            check_output_path(tmp_path / name, kind="markdown")
        else:
            with pytest.raises(EvalsuiteError, match="not a Markdown file"):
                check_output_path(tmp_path / name, kind="markdown")


def test_every_command_refuses_special_files_and_other_kinds(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """report -o, --markdown, baseline record -o, probe --out onto a device, a FIFO, a socket, weights, a config:
    refused before any work, nothing changed (checksums, and the special files are still special)."""
    results = tmp_path / "results.json"
    shutil.copy(GOOD, results)
    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_model.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0{}      weights")
    (run / "adapter_config.json").write_text('{"r": 8}\n', encoding="utf-8")
    (tmp_path / "notes.json").write_text('{"mine": true}\n', encoding="utf-8")
    targets = [*special_files(tmp_path).values(), run / "adapter_model.safetensors", tmp_path / "notes.json"]
    before, types = tree_digest(tmp_path), kinds(tmp_path)
    for out in targets:
        for argv in (["report", results, "-o", out], ["report", results, "-o", tmp_path / "r.html", "--markdown", out],
                     ["baseline", "record", results, "-o", out, "--force"],
                     ["probe", TINY, "--out", out, "--device", "cpu"]):
            assert call_main(argv) == 2, argv
            line = one_error(capsys)
            assert str(out) in line and ("not a regular file" in line or "refusing to replace" in line), line
    assert tree_digest(tmp_path) == before and kinds(tmp_path) == types


def test_probe_out_onto_a_file_that_is_not_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n", encoding="utf-8")
    before = tree_digest(tmp_path)
    assert call_main(["probe", TINY, "--out", notes, "--device", "cpu"]) == 2
    assert "exists and is not a results file" in one_error(capsys)
    assert tree_digest(tmp_path) == before


# --- export --merged -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEFT adapter folder over the tiny base (random LoRA weights, no training: export only merges it)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("adapter") / "lora"
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(TINY),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(folder)
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = str(TINY)
    (folder / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_export_merged_refuses_the_folders_it_reads_and_other_folders(tmp_path: Path, plain_adapter: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    adapter = tmp_path / "lora"
    shutil.copytree(plain_adapter, adapter)
    others = tmp_path / "others"
    others.mkdir()
    (others / "mine.txt").write_text("keep\n", encoding="utf-8")
    base_before = tree_digest(TINY)
    cases = [(adapter, "which this export reads"), (adapter / "merged", "inside"), (tmp_path, "holds"),
             (TINY, "which this export reads"), (TINY / "merged", "inside"),
             (others, "replaces only a folder `evalsuite export --merged` wrote")]
    before = tree_digest(tmp_path)
    for out, needle in cases:
        assert call_main(["export", adapter, "--merged", out, "--overwrite"]) == 2, out
        line = one_error(capsys)
        assert needle in line and str(out) in line, line
    assert tree_digest(tmp_path) == before and tree_digest(TINY) == base_before
    assert call_main(["export", adapter, "--merged", others]) == 2  # without --overwrite: not empty
    assert "folder is not empty" in one_error(capsys)


def test_export_merged_overwrites_only_an_earlier_export(tmp_path: Path, plain_adapter: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "merged"
    assert call_main(["export", plain_adapter, "--merged", out]) == 0
    first = json.loads((out / "evalsuite_export.json").read_text(encoding="utf-8"))
    assert first["kind"] == "evalsuite-export" and (out / "model.safetensors").is_file()
    assert call_main(["export", plain_adapter, "--merged", out, "--overwrite"]) == 0
    second = json.loads((out / "evalsuite_export.json").read_text(encoding="utf-8"))
    assert second["adapter_sha256"] == first["adapter_sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # no staging or old folder left


def test_disk_full_during_export_merged_leaves_nothing(tmp_path: Path, plain_adapter: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The weights' write hits a full disk (safetensors' own error, after half a file): one error, no folder at
    --merged, no hidden staging folder, and an earlier export under --overwrite stays whole."""
    import transformers.modeling_utils
    from safetensors import SafetensorError

    def full(tensors: object, filename: str, *args: object, **kwargs: object) -> None:
        Path(filename).write_bytes(b"\x08\0\0")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    out = tmp_path / "merged"
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)
    assert call_main(["export", plain_adapter, "--merged", out]) == 2
    line = one_error(capsys)
    assert "export failed, nothing was written there" in line and "No space left on device" in line
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert call_main(["export", plain_adapter, "--merged", out]) == 0
    before = tree_digest(out)
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)
    assert call_main(["export", plain_adapter, "--merged", out, "--overwrite"]) == 2
    one_error(capsys)
    assert tree_digest(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_gguf_output_refuses_other_files_and_read_folders(tmp_path: Path, plain_adapter: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.gguf"
    notes.write_text("not a gguf\n", encoding="utf-8")
    before = tree_digest(tmp_path)
    for out, needle in ((notes, "exists and is not a GGUF file"), (plain_adapter / "m.gguf", "inside")):
        assert call_main(["export", plain_adapter, "--gguf", out, "--overwrite", "--llama-cpp", tmp_path]) == 2
        assert needle in one_error(capsys)
    assert tree_digest(tmp_path) == before


def test_training_output_dir_inside_the_base_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"base_model: {TINY}\noutput_dir: {TINY / 'run'}\ndatasets:\n  - path: d.jsonl\n"
                   "    type: chat_template\n", encoding="utf-8")
    before = tree_digest(TINY)
    assert call_main(["train", cfg]) == 2
    assert "inside the base model folder" in one_error(capsys)
    assert tree_digest(TINY) == before


def test_write_failure_knows_safetensors_and_torch_writers() -> None:
    from safetensors import SafetensorError

    assert "No space left" in (write_failure(SafetensorError("I/O error: No space left on device (os error 28)"))
                               or "")
    assert write_failure(SafetensorError("invalid header")) is None
    assert write_failure(OSError(errno.ENOSPC, "x", "/d/f")) == "/d/f: No space left on device"


def test_a_checkpoint_save_that_fills_the_disk_in_safetensors_is_one_error(tmp_path: Path) -> None:
    """safetensors reports a full disk as its own SafetensorError (not an OSError): training still ends with one
    error saying what is left and how to go on (the torch.save case trains for real in test_faults_train)."""
    from evalsuite.trainers.common import write_failures_explained
    from safetensors import SafetensorError

    out = tmp_path / "run"
    (out / "checkpoint-2").mkdir(parents=True)
    full = r"training stopped: a safetensors file could not be written .*os error 28.*run again"
    with pytest.raises(EvalsuiteError, match=full), write_failures_explained(out):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    with pytest.raises(SafetensorError), write_failures_explained(out):  # not a full disk: it stays itself
        raise SafetensorError("invalid header")


def test_train_overwrite_clears_only_a_folder_evalsuite_made(tmp_path: Path) -> None:
    """Checkpoints alone do not make a folder ours: someone else's Hugging Face trainer output (checkpoint-500) is
    refused by --overwrite and left byte-identical; a folder training created (its marker) is cleared."""
    from evalsuite.rundir.contract import RUN_MARKER
    from evalsuite.train.backends import TrainOptions, prepare_out_dir

    theirs = tmp_path / "their-run"
    (theirs / "checkpoint-500").mkdir(parents=True)
    (theirs / "checkpoint-500" / "trainer_state.json").write_text("{}", encoding="utf-8")
    (theirs / "notes.md").write_text("my results\n", encoding="utf-8")
    before = tree_digest(theirs)
    with pytest.raises(EvalsuiteError, match=f"not an evalsuite run dir .*holds no {RUN_MARKER}"):
        prepare_out_dir(theirs, TrainOptions(overwrite=True))
    assert tree_digest(theirs) == before

    ours = tmp_path / "ours"
    assert prepare_out_dir(ours, TrainOptions()) is None
    assert [p.name for p in ours.iterdir()] == [RUN_MARKER]
    (ours / "checkpoint-2").mkdir()
    assert prepare_out_dir(ours, TrainOptions(overwrite=True)) is None
    assert [p.name for p in ours.iterdir()] == [RUN_MARKER]
    assert prepare_out_dir(ours, TrainOptions()) is None  # a folder holding only the marker counts as empty


def test_a_failed_training_run_leaves_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"base_model: {TINY}\nlearning_rate: 1e-3\ndatasets:\n  - path: {tmp_path / 'missing.jsonl'}\n"
                   "    type: chat_template\n", encoding="utf-8")
    out = tmp_path / "run"
    assert call_main(["train", cfg, "--output-dir", out]) == 2
    one_error(capsys)
    assert not out.exists()
