"""llama.cpp through llama-cpp-python: load a GGUF, ask its vocabulary what llama.cpp would do (tokenize, detokenize,
which tokens end generation, whether it adds BOS), and decode greedily.

Everything the probe and the drift checks learn about a GGUF's behaviour comes from llama.cpp itself, never from a
re-implementation: the tokens llama.cpp feeds the model, the end-of-generation set it stops on (its eos/eot ids
plus the end-of-turn names it recognises), its detokenizer. ``pip install 'evalsuite[gguf]'`` installs it; without
it every entry point here is one clear error.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.errors import EvalsuiteError

if TYPE_CHECKING:
    from evalsuite.probe.stall import Watch

INSTALL = "pip install 'evalsuite[gguf]'"
# Context allocated for generation, whatever the trained length (llama.cpp's n_ctx=0 would allocate a 128k-token
# KV cache for Llama-3.1; probe prompts and answers fit in far less).
MAX_CONTEXT = 4096


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise EvalsuiteError(f"llama-cpp-python is not installed: the gguf engine and `evalsuite drift` run GGUF files "
                             f"with it ({INSTALL})") from None
    from llama_cpp import _logger

    _logger.set_verbose(False)  # llama.cpp's own log: errors only (its warnings are what the drift checks report)
    return llama_cpp


def llama_cpp_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("llama_cpp_python")
    except Exception:
        return None


@contextmanager
def _captured_log(lib: Any) -> Iterator[list[str]]:
    """Collect llama.cpp's log lines instead of printing them (a load failure's reason is in them), then hand
    logging back to llama-cpp-python's own callback."""
    lines: list[str] = []

    @lib.llama_log_callback
    def collect(level: int, text: bytes, user_data: Any) -> None:
        lines.append(text.decode("utf-8", errors="replace"))

    lib.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        from llama_cpp import _logger

        lib.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def _load_error(path: Path, lines: list[str]) -> str:
    text = "".join(lines)
    errors = [ln.strip() for ln in text.splitlines() if "error" in ln.lower() or "failed" in ln.lower()]
    reason = errors[0] if errors else "llama.cpp could not load it"
    return f"{path}: llama.cpp cannot load this GGUF: {reason}"


TEMPLATE_KEY = "tokenizer.chat_template"
_construct = threading.Lock()


class TemplateCompileRefused(EvalsuiteError):
    """llama-cpp-python reached for a jinja2 chat formatter while evalsuite built ``Llama``."""


def _refused_formatter(*args: Any, **kwargs: Any) -> Any:
    raise TemplateCompileRefused("llama-cpp-python tried to compile the GGUF's chat template at load; evalsuite "
                                 "renders templates only in its own budgeted sandbox")


def _refused_handler(*args: Any, **kwargs: Any) -> Any:
    raise TemplateCompileRefused("evalsuite renders chat prompts itself; llama-cpp-python's chat completion is off")


@contextmanager
def _templates_hidden() -> Iterator[None]:
    """While ``Llama`` is built: its metadata reader drops every ``tokenizer.chat_template*`` key, and its jinja2
    chat formatter cannot be made.

    ``Llama.__init__`` (llama-cpp-python 0.3.x) reads the GGUF's metadata and compiles each embedded template with
    jinja2's stock sandbox, whatever ``chat_format``/``chat_handler`` says. That compiler folds constant expressions,
    so a template hiding ``{{ "x" * 4000000000 }}`` in a branch never taken allocates gigabytes at load. A GGUF is
    untrusted: its template reaches only evalsuite's budgeted sandbox. Hiding the keys keeps the text from ever
    entering the loop; the refusing formatter makes any other route to the compiler a load error, never a compile.
    Module attributes are swapped, so one construction at a time (the lock); evalsuite builds ``Llama`` nowhere else.
    """
    from llama_cpp import _internals, llama_chat_format

    # Typed as Any: the attributes are swapped for this one construction, which their declared types do not allow.
    model_class: Any = _internals.LlamaModel
    formats: Any = llama_chat_format
    read, formatter = model_class.metadata, formats.Jinja2ChatFormatter

    def metadata(self: Any) -> dict[str, str]:
        return {k: v for k, v in read(self).items() if not k.startswith(TEMPLATE_KEY)}

    with _construct:
        model_class.metadata, formats.Jinja2ChatFormatter = metadata, _refused_formatter
        try:
            yield
        finally:
            model_class.metadata, formats.Jinja2ChatFormatter = read, formatter


def _new_llama(lib: Any, path: Path, threads: int) -> Any:
    with _templates_hidden():
        llm = lib.Llama(str(path), n_ctx=MAX_CONTEXT, n_threads=threads, n_threads_batch=threads, verbose=False,
                        seed=0, chat_handler=_refused_handler)
    # What the guard promises, checked on the object: no template text, no formatter built from one.
    if getattr(llm, "_chat_handlers", None) or any(k.startswith(TEMPLATE_KEY) for k in llm.metadata):
        llm.close()
        raise TemplateCompileRefused("llama-cpp-python kept the GGUF's chat template")
    return llm


@dataclass(frozen=True)
class Greedy:
    ids: list[int]  # generated ids, the stop id included when one was emitted
    capped: bool  # the stall guard ended decoding (evalsuite.probe.guard)


class LlamaCpp:
    """One loaded GGUF. ``vocab_only`` loads the vocabulary without weights (for the static drift checks)."""

    def __init__(self, path: str | Path, vocab_only: bool = False, threads: int | None = None) -> None:
        lib = import_llama_cpp()
        self.lib, self.path, self.llm, self._model = lib, Path(path), None, None
        with _captured_log(lib) as lines:
            try:
                if vocab_only:
                    params = lib.llama_model_default_params()
                    params.vocab_only = True
                    self._model = lib.llama_model_load_from_file(str(path).encode(), params) or None
                    if self._model is None:
                        raise ValueError("failed to load the vocabulary")
                else:
                    n = threads or _threads()
                    self.llm = _new_llama(lib, self.path, n)
            except TemplateCompileRefused as e:
                raise EvalsuiteError(f"{self.path}: {e}") from None
            except (ValueError, RuntimeError, OSError) as e:
                lines.append(str(e))
                raise EvalsuiteError(_load_error(self.path, lines)) from None
        model = self._model if self.llm is None else self.llm._model.model
        self.vocab = lib.llama_model_get_vocab(model)
        # Freed before the interpreter tears llama-cpp-python down (its own __del__ fails at that point).
        atexit.register(_close_if_alive, weakref.ref(self))

    def close(self) -> None:
        if self._model is not None:
            self.lib.llama_model_free(self._model)
            self._model = None
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def __enter__(self) -> LlamaCpp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def n_vocab(self) -> int:
        return int(self.lib.llama_vocab_n_tokens(self.vocab))

    @property
    def n_ctx(self) -> int:
        if self.llm is None:
            raise EvalsuiteError(f"{self.path}: loaded without weights (vocab only); cannot generate")
        return int(self.llm.n_ctx())

    def _special(self, fn: str) -> int | None:
        tid = int(getattr(self.lib, fn)(self.vocab))
        return tid if tid >= 0 else None

    @property
    def bos_id(self) -> int | None:
        return self._special("llama_vocab_bos")

    @property
    def eos_id(self) -> int | None:
        return self._special("llama_vocab_eos")

    @property
    def add_bos(self) -> bool:
        return bool(self.lib.llama_vocab_get_add_bos(self.vocab))

    @cached_property
    def eog_ids(self) -> frozenset[int]:
        """What llama.cpp stops generation on (``llama_vocab_is_eog``) over the whole vocabulary."""
        return frozenset(i for i in range(self.n_vocab) if self.lib.llama_vocab_is_eog(self.vocab, i))

    def token_text(self, tid: int) -> str:
        raw = self.lib.llama_vocab_get_text(self.vocab, tid)
        return (raw or b"").decode("utf-8", errors="replace")

    @cached_property
    def special_tokens(self) -> dict[str, tuple[int, bool]]:
        """text -> (id, is_control) for llama.cpp's control and user-defined tokens (its attributes after load,
        which include the end-of-turn names it marks as control itself)."""
        control, user = self.lib.LLAMA_TOKEN_ATTR_CONTROL, self.lib.LLAMA_TOKEN_ATTR_USER_DEFINED
        out: dict[str, tuple[int, bool]] = {}
        for i in range(self.n_vocab):
            attr = int(self.lib.llama_vocab_get_attr(self.vocab, i))
            if attr & (control | user):
                out.setdefault(self.token_text(i), (i, bool(attr & control)))
        return out

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        """llama.cpp's tokenization with special-token parsing on, as its server and chat paths call it;
        ``add_special`` adds BOS/EOS when the GGUF says to."""
        data = text.encode("utf-8")
        size = len(data) + 8
        for _ in range(2):
            buf = (self.lib.llama_token * size)()
            n = int(self.lib.llama_tokenize(self.vocab, data, len(data), buf, size, add_special, True))
            if n >= 0:
                return list(buf[:n])
            size = -n
        raise EvalsuiteError(f"{self.path}: llama.cpp could not tokenize a {len(text)}-character text")

    def chat_prompt_ids(self, text: str) -> list[int]:
        """The ids llama.cpp's chat path (llama-server's ``/v1/chat/completions``) feeds the model for a rendered
        template: a leading BOS text is dropped when the vocabulary adds BOS itself (a trailing EOS when it adds EOS),
        then the text is tokenized with special tokens added and parsed."""
        add_eos = bool(self.lib.llama_vocab_get_add_eos(self.vocab))
        bos = self.token_text(self.bos_id) if self.bos_id is not None else ""
        eos = self.token_text(self.eos_id) if self.eos_id is not None else ""
        if self.add_bos and bos and text.startswith(bos):
            text = text[len(bos):]
        if add_eos and eos and text.endswith(eos):
            text = text[:-len(eos)]
        return self.tokenize(text, add_special=True)

    def detokenize(self, ids: Sequence[int], special: bool) -> str:
        """``llama_detokenize``: with ``special`` control tokens are written out, without they render empty."""
        if not ids:
            return ""
        arr = (self.lib.llama_token * len(ids))(*ids)
        size = max(64, 16 * len(ids))
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = int(self.lib.llama_detokenize(self.vocab, arr, len(ids), buf, size, False, special))
            if n >= 0:
                return buf.raw[:n].decode("utf-8", errors="replace")
            size = -n
        raise EvalsuiteError(f"{self.path}: llama.cpp could not detokenize {len(ids)} tokens")

    def greedy(self, prompt: Sequence[int], max_new: int, stop_ids: set[int], watch: Watch | None = None) -> Greedy:
        """Greedy decoding until a stop id, ``max_new`` tokens, the context's end, or a stall (``watch``: no new
        token for the stall guard's seconds, the prompt's evaluation included)."""
        budget = min(max_new, self.n_ctx - len(prompt))
        if budget < 1:
            return Greedy([], False)
        out, capped = [], False
        assert self.llm is not None
        gen = self.llm.generate(list(prompt), temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                reset=True)
        try:
            for tok in gen:
                out.append(int(tok))
                if tok in stop_ids or len(out) >= budget:
                    break
                if watch is not None and watch.stalled():
                    capped = True
                    break
        finally:
            gen.close()
        return Greedy(out, capped)


def _close_if_alive(ref: weakref.ref[LlamaCpp]) -> None:
    obj = ref()
    if obj is not None:
        obj.close()


def _threads() -> int:
    """Threads for llama.cpp: EVALSUITE_GGUF_THREADS, else every core this process may use."""
    env = os.environ.get("EVALSUITE_GGUF_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
