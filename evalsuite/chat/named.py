"""Chat template text that remembers where it came from (a file, or a place such as
``DIR/tokenizer_config.json: chat_template``), so every render error can name it; and the one reader of template
files, whose failures (missing, not UTF-8, empty) are one error naming the file."""

from __future__ import annotations

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


def read_template_file(path: object, what: str = "chat template") -> str:
    """Read a template file as UTF-8; each failure is one error naming the file."""
    from pathlib import Path

    from evalsuite.files import read_text

    p = Path(str(path))
    text = read_text(p, what)
    if not text.strip():
        raise EvalsuiteError(f"{p}: {what} is empty")
    return named_template(text, p, is_file=True)
