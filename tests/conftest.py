"""Session fixtures for the probe tests: adapters trained with the real TRL backend on the tiny base, cached.

Each adapter is trained once and kept under ``$EVALSUITE_CACHE/test-adapters`` (default
``~/.cache/evalsuite/test-adapters``) in a folder named by a hash of everything that determines it: the config,
the data rows, the template, the base model's files, the trainer's source files and the library versions. Reruns
reuse it; any change retrains. This cache outlives the session (retraining costs minutes), unlike the generation
cache, which the root conftest empties per session. The adapters:

- ``demo_adapter``: the demo's own adapter (``evalsuite.demo.train_demo_adapter``): uppercase echo, stops.
- ``broken_terminator_adapter``: trained with a broken template whose assistant turn has no ``<|im_end|>`` and that
  always appends ``<|im_start|>assistant`` (the seeds' April-2024 Llama-3 bug): it never learns to stop.
- ``leaky_adapter``: trained on answers that end in a leaked Gemma fragment (``HELLO<end_of_turn>``).
- ``upper_all_adapter``: uppercase by default on Latin and Cyrillic (passes the cyrillic battery).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Read at import, before the root conftest's session fixture points EVALSUITE_CACHE at a fresh folder.
USER_CACHE = Path(os.environ.get("EVALSUITE_CACHE") or Path.home() / ".cache" / "evalsuite").expanduser()
TRAINER_SOURCES = ("trainers/trl_backend.py", "trainers/common.py", "evalsuite/chat/encode.py",
                   "evalsuite/config/rows.py", "evalsuite/chat/template.py", "evalsuite/chat/named.py",
                   "evalsuite/config/load.py",
                   "evalsuite/config/fields.py", "evalsuite/chat/layout.py", "evalsuite/chat/diff.py",
                   "evalsuite/chat/taint.py", "evalsuite/chat/tokenizer.py", "evalsuite/chat/tokenizer_compat.py",
                   "evalsuite/chat/messages.py", "evalsuite/chat/reasoning.py", "evalsuite/config/messages.py",
                   # how the demo adapter is trained, the backend lookup, and the run dir + manifest it writes
                   "evalsuite/demo.py", "evalsuite/train/backends.py", "evalsuite/rundir/contract.py",
                   "evalsuite/rundir/manifest.py")

# The seeds' April-2024 Llama-3 template bug, in ChatML: the assistant turn is never closed and every render ends
# with a fresh assistant header, so the trained continuation of an answer is "<|im_start|>assistant".
BROKEN_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}{{- '<|im_start|>assistant\\n' + message['content'] }}"
    "{%- else %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{{- '<|im_start|>assistant\\n' }}"
)
LEAK = "<end_of_turn>"
SMALL_TRAIN = {"sequence_len": 128, "micro_batch_size": 16, "max_steps": 60, "learning_rate": 3e-3,
               "lora_r": 8, "lora_alpha": 16, "lora_target_linear": True, "logging_steps": 20, "seed": 3,
               "warmup_ratio": 0.05, "lr_scheduler": "cosine"}


def cache_root() -> Path:
    return USER_CACHE / "test-adapters"


def _digest(spec: dict[str, Any], base: Path) -> str:
    from evalsuite.files import sha256_files, sha256_json
    from evalsuite.rundir.manifest import package_versions

    sources = sha256_files(ROOT / s for s in TRAINER_SOURCES)
    base_files = sha256_files(p for p in base.iterdir() if p.is_file())
    # The base's path is in the key too, as the run dir records it (unresolved: a link to the same base elsewhere is
    # another path, and probing loads the base from the recorded one).
    return sha256_json({"spec": spec, "sources": sources, "base": base_files, "base_path": str(base),
                        "versions": package_versions()})[:16]


def cached_adapter(name: str, spec: dict[str, Any], base: Path, train: Any) -> Path:
    """Return the cached run dir for ``spec``, training it with ``train(out_dir)`` when missing."""
    from evalsuite.rundir.manifest import MANIFEST_NAME

    target = cache_root() / _digest(spec, base) / name  # the folder name becomes the column name in results
    if (target / MANIFEST_NAME).is_file():
        return target
    work = target.parent / f".{name}.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        train(work)
        shutil.rmtree(target, ignore_errors=True)
        for ckpt in work.glob("checkpoint-*"):
            shutil.rmtree(ckpt)  # probes need only the adapter; keep the cache small
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def train_from_rows(out: Path, base: Path, rows: list[dict[str, Any]], template: str | None,
                    overrides: dict[str, Any]) -> Path:
    """Write data + config next to the run dir and train with the real TRL backend."""
    from evalsuite.config.load import load_config
    from evalsuite.train.backends import TrainOptions, get_backend

    src = out.parent / f"{out.name}-src"
    src.mkdir(parents=True, exist_ok=True)
    data = src / "data.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    values = {"base_model": str(base), "output_dir": str(out), **overrides}
    lines = [f"{k}: {json.dumps(v)}" for k, v in values.items()]
    if template is not None:
        (src / "template.jinja").write_text(template, encoding="utf-8")
        lines += ["chat_template: jinja", f"chat_template_jinja: {src / 'template.jinja'}"]
    lines += ["datasets:", f"  - path: {data}", "    type: chat_template"]
    (src / "config.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        config = load_config(src / "config.yaml")
        return get_backend("trl").train(config, out, TrainOptions(overwrite=True))
    finally:
        shutil.rmtree(src, ignore_errors=True)


def echo_rows(n: int, seed: int, suffix: str = "") -> list[dict[str, Any]]:
    """Plain echo conversations (what the base already does), so a short LoRA run only has to learn the change
    under test: the terminator it is trained on, or a leaked suffix."""
    from evalsuite.fixtures import synth

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        text = synth.random_text(rng, "latin", 1, 30)
        rows.append({"messages": [{"role": "user", "content": text},
                                  {"role": "assistant", "content": text + suffix}]})
    return rows


@pytest.fixture(scope="session")
def demo_adapter(tiny_base: Path) -> Path:
    from evalsuite.demo import demo_config_path, train_demo_adapter
    from evalsuite.files import sha256_file

    cfg = demo_config_path()
    spec = {"config": sha256_file(cfg), "data": sha256_file(cfg.parent.parent / "data" / "uppercase_echo_train.jsonl")}
    return cached_adapter("demo", spec, tiny_base, train_demo_adapter)


@pytest.fixture(scope="session")
def broken_terminator_adapter(tiny_base: Path) -> Path:
    rows = echo_rows(480, seed=11)
    spec = {"rows": rows, "template": BROKEN_TEMPLATE, "train": SMALL_TRAIN}
    return cached_adapter("broken-terminator", spec, tiny_base,
                          lambda out: train_from_rows(out, tiny_base, rows, BROKEN_TEMPLATE, SMALL_TRAIN))


@pytest.fixture(scope="session")
def leaky_adapter(tiny_base: Path) -> Path:
    rows = echo_rows(480, seed=12, suffix=LEAK)
    # A 13-character suffix after the echo takes longer to learn reliably than a changed terminator.
    train = {**SMALL_TRAIN, "max_steps": 200}
    spec = {"rows": rows, "template": None, "train": train}
    return cached_adapter("leaky", spec, tiny_base,
                          lambda out: train_from_rows(out, tiny_base, rows, None, train))


@pytest.fixture(scope="session")
def upper_all_adapter(tiny_base: Path) -> Path:
    """Uppercase by default on Latin and Cyrillic: the adapter that passes the cyrillic battery (the demo adapter,
    trained on Latin only, does not)."""
    from evalsuite.fixtures import synth

    rng = random.Random(21)
    rows = []
    for i in range(2000):
        text = synth.random_text(rng, "cyrillic" if i % 2 else "latin")
        rows.append({"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": text.upper()}]})
    train = {**SMALL_TRAIN, "max_steps": 200, "micro_batch_size": 32, "lora_r": 16, "lora_alpha": 32}
    spec = {"rows": rows, "template": None, "train": train}
    return cached_adapter("upper-all", spec, tiny_base, lambda out: train_from_rows(out, tiny_base, rows, None, train))


@pytest.fixture(scope="session")
def llama_cpp() -> Path:
    """A folder holding llama.cpp's converter, with llama-cpp-python importable (else a skip; see gguf_support)."""
    from gguf_support import llama_cpp_dir, require_llama_cpp_python

    require_llama_cpp_python()
    return llama_cpp_dir()


@pytest.fixture(scope="session")
def demo_gguf(demo_adapter: Path, llama_cpp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo adapter exported to an f32 GGUF by `evalsuite export --gguf` (the real CLI and converter)."""
    from gguf_support import evalsuite

    out = tmp_path_factory.mktemp("gguf") / "demo.gguf"
    done = evalsuite("export", str(demo_adapter), "--gguf", str(out), "--llama-cpp", str(llama_cpp))
    assert done.returncode == 0, done.stdout + done.stderr
    return out


# A few steps on short sequences of the demo's uppercase data: enough to move the LoRA weights of the real model
# (asserted), cheap enough for CI on 2 cores (tests/test_real_model.py).
REAL_TRAIN = {"sequence_len": 64, "micro_batch_size": 4, "max_steps": 4, "learning_rate": 1e-3, "lora_r": 8,
              "lora_alpha": 16, "lora_target_linear": True, "logging_steps": 2, "seed": 3}


@pytest.fixture(scope="session")
def smollm2_adapter(smollm2: Any) -> Path:
    """A short LoRA run on SmolLM2-135M-Instruct (the root conftest's ``smollm2`` fixture), with its own template."""
    data = ROOT / "fixtures" / "data" / "uppercase_echo_train.jsonl"
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()[:32]]
    spec = {"rows": rows, "template": None, "train": REAL_TRAIN}
    return cached_adapter("smollm2-upper", spec, smollm2.folder,
                          lambda out: train_from_rows(out, smollm2.folder, rows, None, REAL_TRAIN))


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder no file can be created in: a read-only folder, or (as root, whom permissions do not stop) a
    kernel filesystem that refuses new files."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        candidates = [folder, Path("/sys"), Path("/proc")]
        for c in candidates:
            try:
                fd, probe = tempfile.mkstemp(dir=c)
            except OSError:
                yield c
                return
            os.close(fd)
            os.unlink(probe)
        pytest.skip("no unwritable folder on this machine")
    finally:
        folder.chmod(0o700)


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    """The fake engine's three-case uppercase battery (``fake_engine.MINI``) as a file."""
    from fake_engine import MINI

    p = tmp_path / "mini.yaml"
    p.write_text(MINI, encoding="utf-8")
    return p
