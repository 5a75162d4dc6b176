"""Chat template text that remembers where it came from (a file, or a place such as
``DIR/tokenizer_config.json: chat_template``), so every render error can name it; and the one reader of template
files, whose failures (missing, not UTF-8, empty) are one error naming the file."""

from __future__ import annotations

from pathlib import Path

from evalsuite.errors import EvalsuiteError


class _Named(str):
    """Template text that remembers where it was read from, so errors can name the file."""

    origin: str
    is_file: bool


def named_template(text: str, origin: object, is_file: bool = False) -> str:
    """``text`` tagged with its origin for error messages: a template file, or a place such as
    ``DIR/tokenizer_config.json: chat_template``."""
    named = _Named(text)
    named.origin, named.is_file = str(origin), is_file
    return named


def template_name(source: str) -> str:
    """How messages name a template: ``chat template FILE``, ``chat template (WHERE)`` or ``chat template``."""
    origin = getattr(source, "origin", None)
    if origin is None:
        return "chat template"
    return f"chat template {origin}" if getattr(source, "is_file", False) else f"chat template ({origin})"


MAX_TEMPLATE_BYTES = 4 * 2**20  # real chat templates are a few KB; the largest known (tool-calling) under 40 KB


def check_template_file(p: Path, what: str = "chat template") -> None:
    """A template is read from a regular file of bounded size: a folder, ``/dev/zero`` or a FIFO would otherwise be
    read forever or taken for template text."""
    import stat

    try:
        st = p.stat()
    except FileNotFoundError:
        raise EvalsuiteError(f"{p}: no such {what} file") from None
    except OSError as e:
        raise EvalsuiteError(f"{p}: cannot read the {what}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise EvalsuiteError(f"{p}: is a folder, not a {what} file")
    if not stat.S_ISREG(st.st_mode):
        raise EvalsuiteError(f"{p}: is not a regular file (a device or a pipe); a {what} must be a file")
    if st.st_size > MAX_TEMPLATE_BYTES:
        raise EvalsuiteError(f"{p}: {what} of {st.st_size:,} bytes, over the limit of {MAX_TEMPLATE_BYTES:,}")


def read_template_file(path: object, what: str = "chat template") -> str:
    """Read a template file as UTF-8; each failure is one error naming the file."""
    from evalsuite.files import read_text

    p = Path(str(path))
    check_template_file(p, what)
    text = read_text(p, what)
    if not text.strip():
        raise EvalsuiteError(f"{p}: {what} is empty")
    return named_template(text, p, is_file=True)
