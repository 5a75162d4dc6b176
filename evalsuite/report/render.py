"""Render the report model to one self-contained HTML file and to Markdown for PRs.

Model outputs are untrusted text: the HTML environment autoescapes everything, and the Markdown
environment passes every ``{{ value }}`` through :func:`md_escape` (``finalize``), so an output
containing ``<script>``, ``|`` or a newline cannot break out of its table cell.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalsuite import __version__
from evalsuite.github import md_escape  # the one Markdown cell escaper (gate summaries use it too)
from evalsuite.report.model import ReportModel

HERE = Path(__file__).resolve().parent
MD_CELL_CHARS = 400


def _truncate(text: str, limit: int = MD_CELL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(value: Any, n: int = 12) -> str:
    return "" if value is None else str(value).split(":")[-1][:n]


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _expected(value: Any) -> str:
    """Strings as they are; lists (SQuAD answers) and other values as JSON, not Python repr."""
    if value is None:
        return "–"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _environment(markdown: bool) -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(HERE)),
        autoescape=not markdown,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=md_escape if markdown else None,
    )
    env.filters.update(truncate_md=_truncate, short=_short, num=_num, expected=_expected)
    return env


def _context(model: ReportModel, title: str) -> dict[str, Any]:
    return {
        "m": model,
        "title": title,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "files": list({c.file: c.results for c in model.columns}.items()),
    }


def render_html(model: ReportModel, title: str = "evalsuite report") -> str:
    return _environment(markdown=False).get_template("report.html.jinja").render(_context(model, title))


def render_markdown(model: ReportModel, title: str = "evalsuite report") -> str:
    return _environment(markdown=True).get_template("report.md.jinja").render(_context(model, title))
