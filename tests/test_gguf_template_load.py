"""A GGUF's embedded chat templates are untrusted code: loading the GGUF in llama.cpp must never hand them to a jinja2
compiler (llama-cpp-python's ``Llama()`` compiles every ``tokenizer.chat_template*`` with jinja2's stock sandbox,
which folds ``{{ "x" * 4000000000 }}`` into a 4 GB constant even inside a branch that is never taken)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
from gguf_support import CLI_TIMEOUT, THREADS, new_metadata

from evalsuite.gguf.reader import read_gguf

BOMB = '{{ "x" * 4000000000 }}'
HIDDEN = "{% if false %}" + BOMB + "{% endif %}"
# Address space for the child processes: far above what the tiny model needs, far below the 4 GB the constant asks for.
ADDRESS_SPACE = 3 * 1024**3


@pytest.fixture(scope="module")
def bomb_gguf(demo_gguf: Path, llama_cpp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo GGUF with the bomb hidden in its default template (which still renders as before: the branch is
    never taken) and in a second, named template (``tokenizer.chat_template.tool_use``)."""
    template = read_gguf(demo_gguf).metadata["tokenizer.chat_template"]
    folder = tmp_path_factory.mktemp("bomb")
    config = folder / "tokenizer_config.json"
    config.write_text(json.dumps({"chat_template": [{"name": "default", "template": HIDDEN + template},
                                                    {"name": "tool_use", "template": HIDDEN}]}))
    out = new_metadata(llama_cpp, demo_gguf, folder / "bomb.gguf", "--chat-template-config", str(config))
    meta = read_gguf(out).metadata
    assert BOMB in meta["tokenizer.chat_template"] and BOMB in meta["tokenizer.chat_template.tool_use"]
    return out


def test_loading_a_gguf_compiles_none_of_its_templates(bomb_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.gguf.llama import LlamaCpp

    compiled: list[str] = []
    real = jinja2.Environment.compile

    def recording(self: jinja2.Environment, source: object, *args: object, **kwargs: object) -> object:
        compiled.append(source if isinstance(source, str) else repr(source))
        if isinstance(source, str) and BOMB in source:
            raise AssertionError("the GGUF's template reached a jinja2 compiler")
        return real(self, source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jinja2.Environment, "compile", recording)
    with LlamaCpp(bomb_gguf, threads=1) as llama:
        assert llama.llm is not None and llama.n_vocab > 0
        assert not any(k.startswith("tokenizer.chat_template") for k in llama.llm.metadata)
        assert not llama.llm._chat_handlers
        # The rest of the metadata is still there (only the templates are kept from llama-cpp-python).
        assert llama.llm.metadata.get("general.architecture") == "llama"
    assert not any(BOMB in s for s in compiled)
    # The guard is undone after construction: llama-cpp-python's own classes are back.
    from llama_cpp import _internals, llama_chat_format

    assert llama_chat_format.Jinja2ChatFormatter.__name__ == "Jinja2ChatFormatter"
    assert _internals.LlamaModel.metadata.__qualname__ == "LlamaModel.metadata"


# Run first in a child process: jinja2's compiler exits with status 9 the moment it is handed the bomb, so no test ever
# compiles it (under an address-space cap jinja's constant folder swallows the MemoryError and hides the hazard).
RECORDER = f"""
import sys, jinja2
_real = jinja2.Environment.compile
def _recording(self, source, *args, **kwargs):
    if isinstance(source, str) and {BOMB!r} in source:
        sys.exit(9)
    return _real(self, source, *args, **kwargs)
jinja2.Environment.compile = _recording
"""


def test_llama_cpp_python_alone_would_compile_the_template(bomb_gguf: Path) -> None:
    """The hazard is real: without the guard, ``Llama()`` hands the hidden branch to jinja2's compiler."""
    code = RECORDER + f"import llama_cpp\nllama_cpp.Llama({str(bomb_gguf)!r}, n_ctx=64, verbose=False)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=CLI_TIMEOUT,
                          preexec_fn=_cap_memory)
    assert done.returncode == 9, done.stderr[-2000:]


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def test_export_verification_loads_the_weights_without_compiling(bomb_gguf: Path, demo_adapter: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``export --gguf`` verifies with the static drift checks on the whole model (``Llama`` with weights)."""
    from evalsuite.drift.run import check_static

    sources: list[str] = []
    real = jinja2.Environment.compile

    def recording(self: jinja2.Environment, source: object, *args: object, **kwargs: object) -> object:
        if isinstance(source, str):
            sources.append(source)
        return real(self, source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jinja2.Environment, "compile", recording)
    findings = check_static(demo_adapter, bomb_gguf, ["uppercase-echo"], weights=True)
    assert not any(BOMB in s for s in sources)
    # The checks still ran on the template read by our own reader (hidden only from llama-cpp-python): found, and,
    # with the bomb's branch never taken, rendering exactly as the training template does.
    rules = {f.rule for f in findings}
    assert "gguf-template-missing" not in rules and "gguf-template-differs" not in rules, rules


@pytest.mark.parametrize("command", ["probe", "drift"])
def test_probe_and_drift_on_the_bomb_gguf_run_normally(command: str, bomb_gguf: Path, demo_adapter: Path,
                                                      tmp_path: Path) -> None:
    """The CLI paths (probe's gguf engine loads the weights; drift's static side reads the template), with jinja2's
    compiler watching for the bomb and the address space capped as a safety net: they finish as on a clean GGUF."""
    import os

    argv = {"probe": ["probe", str(bomb_gguf), "--battery", "uppercase-echo", "--out", str(tmp_path / "r.json")],
            "drift": ["drift", str(demo_adapter), str(bomb_gguf), "--battery", "uppercase-echo",
                      "--static-only"]}[command]
    code = RECORDER + f"from evalsuite.cli import main\nsys.exit(main({argv!r}))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=CLI_TIMEOUT,
                          env={**os.environ, **THREADS}, preexec_fn=_cap_memory)
    assert done.returncode != 9, "the GGUF's template reached jinja2's compiler"
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr, done.stderr[-3000:]
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
    if command == "probe":
        results = json.loads((tmp_path / "r.json").read_text())
        samples = results["samples"]
        assert samples and all(isinstance(s.get("output"), str) for s in samples)
    else:  # the template was read and compared (not missing), and renders as the training one
        assert "template  clean" in done.stdout and "gguf-template-missing" not in done.stdout, done.stdout
