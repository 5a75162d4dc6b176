"""Render the report model to one self-contained HTML file and to Markdown for PRs.

Model outputs are untrusted text: the HTML environment autoescapes everything, and the Markdown
environment passes every ``{{ value }}`` through :func:`md_escape` (``finalize``), so an output
containing ``<script>``, ``|`` or a newline cannot break out of its table cell.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalsuite import __version__
from evalsuite.github import md_escape as md_cell  # the one Markdown cell escaper (gate summaries use it too)
from evalsuite.report.cases import Turn, clip
from evalsuite.report.columns import Column
from evalsuite.report.model import ReportModel
from evalsuite.report.provenance import kind_text, provenance_text

HERE = Path(__file__).resolve().parent
MD_CELL_CHARS = 400
MD_FLIPS = 20  # flipped cases listed per battery in the Markdown (the HTML has them all)
MD_PROMPT_HEAD, MD_PROMPT_TAIL = 100, 200


def md_escape(value: Any) -> str:
    """Make any value safe inside a GitHub Markdown table cell (newlines become ``<br>``).

    A :class:`~markupsafe.Markup` value is the output of one of the template's own macros, whose values were
    escaped when the macro rendered them; it passes unchanged (escaping it again would garble it).
    """
    from markupsafe import Markup

    if isinstance(value, Markup):
        return str(value)
    return md_cell(value)


def _truncate(text: str, limit: int = MD_CELL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(value: Any, n: int = 12) -> str:
    return "" if value is None else str(value).split(":")[-1][:n]


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%"


def _arrow(direction: str) -> str:
    """``pass->fail`` as ``pass→fail``."""
    return direction.replace("->", "→")


def _mark(verdict: str) -> str:
    """A verdict with a shape, so it reads without colour: ``▲ better``, ``▼ worse``."""
    return {"better": "▲ better", "worse": "▼ worse"}.get(verdict, verdict)


def _mdturns(turns: list[Turn]) -> str:
    """A conversation in one Markdown cell: every turn, each cut in the middle to keep its end."""
    if len(turns) == 1:
        return clip(turns[0].content, MD_PROMPT_HEAD, MD_PROMPT_TAIL).text
    return "\n".join(f"{t.role}: {clip(t.content, MD_PROMPT_HEAD, MD_PROMPT_TAIL).text}" for t in turns)


def _mdclip(text: str) -> str:
    return clip(text, MD_PROMPT_HEAD, MD_PROMPT_TAIL).text


def _role(col: Column) -> str:
    role = "baseline" if col.is_baseline else "candidate" if col.ref is not None else ""
    return " + ".join(r for r in (role, "control" if col.is_control else "") if r) or "–"


def _caps(col: Column) -> str:
    """The max_new_tokens caps of a column's batteries: one number, or the range (per battery in Budgets)."""
    caps = sorted({col.cap(b) for b in col.results.batteries() if col.results.samples_for(b, col.name)})
    if not caps:
        return "–"
    return str(caps[0]) if len(caps) == 1 else f"{caps[0]}–{caps[-1]} (per battery)"


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
    env.filters.update(truncate_md=_truncate, short=_short, num=_num, pct=_pct, arrow=_arrow, role=_role,
                       caps=_caps, mark=_mark, mdturns=_mdturns, mdclip=_mdclip,
                       clip=clip, kind=lambda col: kind_text(col.adapter),
                       provenance=lambda col: provenance_text(col.adapter))
    return env


def _context(model: ReportModel, title: str) -> dict[str, Any]:
    return {
        "m": model,
        "title": title,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "md_flips": MD_FLIPS,
        "files": list({c.file: c.results for c in model.columns}.items()),
    }


def render_html(model: ReportModel, title: str = "evalsuite report") -> str:
    return _environment(markdown=False).get_template("report.html.jinja").render(_context(model, title))


def render_markdown(model: ReportModel, title: str = "evalsuite report") -> str:
    return _environment(markdown=True).get_template("report.md.jinja").render(_context(model, title))
