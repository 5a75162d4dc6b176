"""Issue 9, training: an output_dir that is a file, --resume after changing settings, a corrupt newest checkpoint, a
disk that fills while a checkpoint is saved, and the folder that leaves behind. Each is one clear error (or a
warning and the right fallback), and the user's files are untouched. Real TRL training on the tiny base (CPU)."""

from __future__ import annotations

import errno
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import call_main, run_cli, tree_digest

from evalsuite.rundir.contract import RUN_MARKER, open_run_dir
from evalsuite.train.backends import SETTINGS_FILE, TrainOptions, prepare_out_dir

ROWS = [{"messages": [{"role": "user", "content": f"word {i}"}, {"role": "assistant", "content": f"WORD {i}"}]}
        for i in range(40)]


def write_config(tmp: Path, base: Path, **overrides: Any) -> Path:
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    values: dict[str, Any] = {"base_model": str(base), "sequence_len": 64, "micro_batch_size": 4, "max_steps": 4,
                              "save_steps": 2, "learning_rate": 1e-3, "lora_r": 4, "lora_alpha": 8,
                              "lora_target_linear": True, "logging_steps": 1, "seed": 1,
                              "output_dir": str(tmp / "run"), **overrides}
    lines = [f"{k}: {json.dumps(v)}" for k, v in values.items()]
    cfg = tmp / "config.yaml"
    cfg.write_text("\n".join(lines) + f"\ndatasets:\n  - path: {data}\n    type: chat_template\n", encoding="utf-8")
    return cfg


def one_error(err: str) -> str:
    """The one ``error:`` line (after the trainer's progress bar, which does not end its line when stopped)."""
    lines = re.findall(r"(?:^|[\r\n\]])(error: [^\r\n]*)", err)
    assert len(lines) == 1 and "Traceback" not in err, err
    return str(lines[0])


def test_output_dir_that_is_a_file(tmp_path: Path, tiny_base: Path) -> None:
    cfg = write_config(tmp_path, tiny_base)
    (tmp_path / "run").write_text("my notes", encoding="utf-8")
    before = tree_digest(tmp_path)
    done = run_cli("train", cfg, timeout=300)
    assert done.returncode == 2 and f"{tmp_path / 'run'}: output dir is a file" in one_error(done.stderr)
    done = run_cli("train", cfg, "--output-dir", tmp_path / "run" / "sub", timeout=300)
    assert done.returncode == 2 and f"is under {tmp_path / 'run'}, which is a file" in one_error(done.stderr)
    assert tree_digest(tmp_path) == before


def test_incomplete_checkpoints_only(tmp_path: Path, tiny_base: Path) -> None:
    """What a full disk during the first save leaves: checkpoint-2 without trainer_state.json. A plain run and
    --resume say what it is and point at --overwrite, which accepts the folder (see the disk-full test)."""
    cfg = write_config(tmp_path, tiny_base)
    half = tmp_path / "run" / "checkpoint-2"
    half.mkdir(parents=True)
    (half / "optimizer.pt").write_bytes(b"PK\x03\x04 cut short")
    (tmp_path / "run" / RUN_MARKER).write_text("made by `evalsuite train`\n", encoding="utf-8")  # as training leaves it
    before = tree_digest(tmp_path)
    done = run_cli("train", cfg, timeout=300)
    line = one_error(done.stderr)
    assert done.returncode == 2 and "holds only incomplete checkpoints" in line and "--overwrite" in line
    assert "--resume" not in line
    done = run_cli("train", cfg, "--resume", timeout=300)
    line = one_error(done.stderr)
    assert done.returncode == 2 and "checkpoint-2: incomplete (no trainer_state.json" in line
    assert "pass --overwrite" in line
    assert tree_digest(tmp_path) == before
    assert prepare_out_dir(tmp_path / "run", TrainOptions(overwrite=True)) is None  # accepted and cleared
    assert not half.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    """A run dir with checkpoint-2 and checkpoint-4 (the slow part, shared)."""
    tmp = tmp_path_factory.mktemp("trained")
    assert call_main(["train", write_config(tmp, tiny_base)]) == 0
    return tmp


def copy_trained(trained: Path, tmp: Path, base: Path, **overrides: Any) -> Path:
    shutil.copytree(trained / "run", tmp / "run")
    return write_config(tmp, base, **overrides)


@pytest.mark.slow
def test_checkpoints_record_the_settings(trained: Path) -> None:
    for step in (2, 4):
        settings = json.loads((trained / "run" / f"checkpoint-{step}" / SETTINGS_FILE).read_text(encoding="utf-8"))
        assert settings["lora_r"] == 4 and settings["micro_batch_size"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("changes,named", [
    ({"lora_r": 8}, ["lora_r: checkpoint 4, config 8 (line 7)"]),
    ({"lora_alpha": 32, "learning_rate": 0.01}, ["lora_alpha: checkpoint 8.0, config 32.0", "learning_rate:"]),
])
def test_resume_with_other_settings_names_them(trained: Path, tmp_path: Path, tiny_base: Path,
                                               capsys: pytest.CaptureFixture[str], changes: dict[str, Any],
                                               named: list[str]) -> None:
    cfg = copy_trained(trained, tmp_path, tiny_base, max_steps=6, **changes)  # a longer run is allowed
    before = tree_digest(tmp_path)
    assert call_main(["train", cfg, "--resume"]) == 2
    line = one_error(capsys.readouterr().err)
    assert f"{cfg}: --resume: {tmp_path / 'run' / 'checkpoint-4'} was trained with other settings" in line
    for part in named:
        assert part in line
    assert "max_steps" not in line and "--overwrite" in line
    assert tree_digest(tmp_path) == before


@pytest.mark.slow
def test_resume_without_our_record_compares_the_adapter_config(trained: Path, tmp_path: Path, tiny_base: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = copy_trained(trained, tmp_path, tiny_base, lora_r=16)
    for step in (2, 4):
        (tmp_path / "run" / f"checkpoint-{step}" / SETTINGS_FILE).unlink()  # an older evalsuite, another trainer
    assert call_main(["train", cfg, "--resume"]) == 2
    assert "lora_r: checkpoint 4, config 16" in one_error(capsys.readouterr().err)


@pytest.mark.slow
def test_truncated_optimizer_falls_back_to_the_previous_checkpoint(trained: Path, tmp_path: Path, tiny_base: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cfg = copy_trained(trained, tmp_path, tiny_base, max_steps=6)
    newest = tmp_path / "run" / "checkpoint-4"
    optimizer = newest / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    with pytest.warns(UserWarning, match=f"{newest}: optimizer.pt is truncated or corrupt; resuming from "
                                         "checkpoint-2 instead"):
        assert call_main(["train", cfg, "--resume"]) == 0
    train = open_run_dir(tmp_path / "run").manifest["train"]
    assert train["resumed_from"] == "checkpoint-2" and train["start_step"] == 2 and train["global_step"] == 6


@pytest.mark.slow
def test_every_checkpoint_corrupt_is_one_error(trained: Path, tmp_path: Path, tiny_base: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = copy_trained(trained, tmp_path, tiny_base)
    for step in (2, 4):
        weights = tmp_path / "run" / f"checkpoint-{step}" / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:200])
    before = tree_digest(tmp_path)
    assert call_main(["train", cfg, "--resume"]) == 2
    line = one_error(capsys.readouterr().err)
    assert "checkpoint-4: adapter_model.safetensors is truncated or corrupt" in line and "checkpoint-2:" in line
    assert "pass --overwrite" in line
    assert tree_digest(tmp_path) == before


@pytest.mark.slow
def test_disk_full_while_saving_a_checkpoint(tmp_path: Path, tiny_base: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while checkpoint-4's optimizer state is written: one error saying what is left and how to
    go on; then a plain run refuses, --resume continues from checkpoint-2 and --overwrite starts again."""
    import torch

    real_save = torch.save

    def full_disk(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if str(f).endswith("checkpoint-4/optimizer.pt"):
            Path(f).write_bytes(b"PK\x03\x04")  # a start, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        real_save(obj, f, *args, **kwargs)

    cfg = write_config(tmp_path, tiny_base)
    monkeypatch.setattr(torch, "save", full_disk)
    assert call_main(["train", cfg]) == 2
    line = one_error(capsys.readouterr().err)
    assert "checkpoint-4/optimizer.pt: No space left on device" in line
    assert "--resume` continues from checkpoint-2" in line
    monkeypatch.setattr(torch, "save", real_save)
    run = tmp_path / "run"
    assert not (run / "checkpoint-4" / "trainer_state.json").exists()

    assert call_main(["train", cfg]) == 2  # a plain run must not start over a run with a checkpoint
    assert "output dir is not empty; pass --resume" in one_error(capsys.readouterr().err)
    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    with pytest.warns(UserWarning, match=r"checkpoint-4: incomplete \(no trainer_state.json"):
        assert call_main(["train", cfg, "--resume", "--output-dir", resumed]) == 0
    assert open_run_dir(resumed).manifest["train"]["resumed_from"] == "checkpoint-2"
    assert call_main(["train", cfg, "--overwrite"]) == 0
    assert open_run_dir(run).manifest["train"]["start_step"] == 0
