"""Errors that reach the user as one clean line (the CLI prints them and exits 2, no traceback)."""

from __future__ import annotations


class EvalsuiteError(Exception):
    """Bad input or usage. The message is already user-facing, e.g. ``config.yaml:12: lora_r: ...``."""

    exit_code = 2


def located(path: object, line: int | None, key: str | None, message: str) -> str:
    """Format ``path:line: key: message`` leaving out the parts we do not know."""
    where = str(path)
    if line is not None:
        where += f":{line}"
    return f"{where}: {key}: {message}" if key else f"{where}: {message}"
