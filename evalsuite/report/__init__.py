"""Side-by-side comparison reports (HTML + Markdown) from one or more results files.

Import-light on purpose: matplotlib and jinja2 are imported only when a report is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def build_report(paths: list[Path], output: Path | None = None, markdown: Path | None = None,
                 baseline: Path | None = None, gates: list[Any] | None = None, alpha: float = 0.05,
                 title: str = "evalsuite report") -> Any:
    """Build the model, write the requested files atomically, and return the model."""
    from evalsuite.files import atomic_write_text
    from evalsuite.report.build import build_model
    from evalsuite.report.render import render_html, render_markdown

    model = build_model(paths, baseline, gates, alpha, with_plots=output is not None)
    if output is not None:
        atomic_write_text(output, render_html(model, title))
    if markdown is not None:
        atomic_write_text(markdown, render_markdown(model, title))
    return model
