"""GitHub Actions conventions, shared by the lint, the gates and the report: workflow-command annotations
(``::error file=...,line=...,title=...::message``) with GitHub's escaping, Markdown table cells, and the job summary
file (``$GITHUB_STEP_SUMMARY``, appended to, as GitHub expects; ``--summary FILE`` elsewhere)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from evalsuite.errors import EvalsuiteError
from evalsuite.files import check_output_path, resolve_path

LEVELS = ("error", "warning", "notice")
# GitHub rejects a step's summary over 1 MiB; keep our part under it and say where the rest is.
SUMMARY_LIMIT = 1_000_000


def escape_data(text: str) -> str:
    """A workflow command's message: ``%``, CR and LF are percent-encoded (``%`` first)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (file, title): as data, plus ``:`` and ``,``, which delimit properties."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def relative_path(path: str | Path, root: Path | None = None) -> str:
    """``path`` relative to ``root`` (default: the working directory, which is the checkout in a workflow) with
    forward slashes; unchanged when it lies outside."""
    p = Path(path)
    base = (root or Path.cwd()).resolve()
    try:
        return p.resolve().relative_to(base).as_posix()
    except (ValueError, OSError):
        return p.as_posix()


def annotation(level: str, message: str, *, file: str | None = None, line: int | None = None,
               title: str | None = None) -> str:
    """One workflow command line. ``line`` is used only with ``file`` (GitHub ignores it otherwise)."""
    if level not in LEVELS:
        raise ValueError(f"bad annotation level {level!r}")
    props = []
    if file:
        props.append(f"file={escape_property(file)}")
        if line is not None:
            props.append(f"line={line}")
    if title:
        props.append(f"title={escape_property(title)}")
    head = f"::{level} {','.join(props)}" if props else f"::{level}"
    return f"{head}::{escape_data(message)}"


def error_annotation(error: Exception, title: str, fallback_file: str | Path | None = None) -> str:
    """An ``::error`` for a bad-input error: on the file (and line) its message starts with (``file:line: ...``,
    the form every evalsuite error takes), else on ``fallback_file``."""
    m = re.match(r"(?P<file>[^:\n]+?):(?P<line>\d+): ", str(error))
    if m and Path(m["file"]).is_file():
        return annotation("error", str(error), file=relative_path(m["file"]), line=int(m["line"]), title=title)
    file = relative_path(fallback_file) if fallback_file else None
    return annotation("error", str(error), file=file, title=title)


def md_escape(value: object) -> str:
    """Make any value safe inside a GitHub Markdown table cell (newlines become ``<br>``)."""
    if value is None:
        return ""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\`*_[]|#~":
        text = text.replace(ch, "\\" + ch)
    return text.replace("\r\n", "\n").replace("\n", "<br>")


def summary_path(explicit: Path | None) -> Path | None:
    """Where the Markdown summary goes: ``--summary FILE``, else ``$GITHUB_STEP_SUMMARY`` when set, else nowhere."""
    if explicit is not None:
        return explicit
    env = os.environ.get("GITHUB_STEP_SUMMARY", "").strip()
    return Path(env) if env else None


def check_summary_path(path: Path, protected: list[Path], where: str = "--summary") -> None:
    """Refuse a summary path that is one of the command's input or output files: appending Markdown to a results
    file or a report would ruin it. Commands call this before doing the work."""
    target = resolve_path(path, where)
    if any(target == resolve_path(p, "input") for p in protected):
        raise EvalsuiteError(f"{path}: {where}: is one of this command's input or output files; refusing to append "
                             "a summary to it")
    if target.is_dir():
        raise EvalsuiteError(f"{path}: {where}: is a directory")
    check_output_path(path, f"{where} file")  # under a file, or in a folder we cannot write in


def append_summary(path: Path, markdown: str, protected: list[Path], where: str = "--summary") -> None:
    """Append ``markdown`` to the summary file (earlier steps' summaries stay), cut to GitHub's limit."""
    check_summary_path(path, protected, where)
    if len(markdown.encode("utf-8")) > SUMMARY_LIMIT:
        cut = markdown.encode("utf-8")[:SUMMARY_LIMIT].decode("utf-8", errors="ignore")
        markdown = cut[: cut.rfind("\n") + 1] + ("\n*Summary cut at 1 MB (GitHub's limit for a step): the full "
                                                  "report is in the job's artifacts.*\n")
    try:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(markdown if markdown.endswith("\n") else markdown + "\n")
    except OSError as e:
        raise EvalsuiteError(f"{path}: {where}: cannot append: {e.strerror}") from None
