"""Matplotlib figures (Agg backend, no pyplot global state) embedded as base64 PNG data URIs."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

# A colour-blind-safe cycle (Okabe-Ito) so six columns stay distinguishable.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def grouped_bars(title: str, groups: Sequence[str], labels: Sequence[str],
                 values: Sequence[Sequence[float | None]],
                 errors: Sequence[Sequence[tuple[float, float] | None]], ylabel: str, top: float) -> str:
    return _png(bars_figure(title, groups, labels, values, errors, ylabel, top))


def bars_figure(title: str, groups: Sequence[str], labels: Sequence[str],
                values: Sequence[Sequence[float | None]],
                errors: Sequence[Sequence[tuple[float, float] | None]], ylabel: str, top: float) -> Any:
    """Bars per group (x) and label (colour), each with its value written on it and its CI as an error bar.

    ``values[j][i]`` is label j in group i; None leaves a gap marked "n/a" (never a bar at 0). The axis runs
    from 0 to ``top`` (the metric's full scale), so a bar at 0 reads as 0, not as a flat line on a tiny axis.
    """
    n = max(len(labels), 1)
    width = 0.8 / n
    fig = _figure(max(5.0, 1.2 + len(groups) * (0.35 + 0.3 * n)), 3.4)
    ax = fig.add_subplot()
    for j, label in enumerate(labels):
        xs = [i + (j - (n - 1) / 2) * width for i in range(len(groups))]
        known = [(x, v, e) for x, v, e in zip(xs, values[j], errors[j], strict=True) if v is not None]
        ax.bar([x for x, _, _ in known], [v for _, v, _ in known], width * 0.95, label=label,
               color=_colour(j), yerr=[[max(0.0, v - e[0]) if e else 0.0 for _, v, e in known],
                                       [max(0.0, e[1] - v) if e else 0.0 for _, v, e in known]],
               capsize=2, error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        for x, v, e in zip(xs, values[j], errors[j], strict=True):
            # the value above its CI (a bar at 0 is invisible, its label is not); a gap says n/a
            y = top * 0.01 + (max(v, e[1]) if v is not None and e else v or 0.0)
            ax.text(x, y, _short(v, top) if v is not None else "n/a", ha="center", va="bottom", fontsize=6,
                    rotation=90 if n > 4 else 0, color="#222222" if v is not None else "#777777")
    crowded = sum(len(g) for g in groups) > 8 * len(groups) or len(groups) > 5
    ax.set_xticks(range(len(groups)), list(groups), rotation=25 if crowded else 0,
                  ha="right" if crowded else "center", rotation_mode="anchor")
    ax.set_ylim(0, top * 1.12)  # room for the value labels above a full bar
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncols=1, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _short(value: float, top: float) -> str:
    return f"{value:.0f}" if top >= 10 else f"{value:.2f}"


# Better / worse / not significant: blue, vermillion, grey (Okabe-Ito), and a marker shape each, so the
# verdict does not rest on colour alone.
VERDICT_STYLE = {"better": ("#0072B2", "^"), "worse": ("#D55E00", "v")}
NEUTRAL_STYLE = ("#777777", "o")


def delta_plot(title: str, rows: Sequence[tuple[str, float, float, float, str]]) -> str:
    return _png(delta_figure(title, rows))


def delta_figure(title: str, rows: Sequence[tuple[str, float, float, float, str]]) -> Any:
    """A forest plot: one row per (metric, candidate), the delta as a point, its 95% CI as a line, 0 marked.

    ``rows``: (label, delta, ci_low, ci_high, verdict) on one common scale; verdict "better"/"worse" when
    significant, anything else for not significant.
    """
    fig = _figure(6.8, 0.9 + 0.42 * len(rows))
    ax = fig.add_subplot()
    span = max([abs(v) for _, d, lo, hi, _ in rows for v in (d, lo, hi)] + [1.0])
    for i, (_label, d, lo, hi, verdict) in enumerate(rows):
        colour, marker = VERDICT_STYLE.get(verdict, NEUTRAL_STYLE)
        ax.plot([lo, hi], [i, i], color=colour, linewidth=2, solid_capstyle="butt")
        ax.plot([d], [i], marker=marker, color=colour, markersize=7, linestyle="none")
        ax.annotate(f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]", (hi, i), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=7, color=colour)
    ax.axvline(0, color="#333333", linewidth=0.8)
    ax.set_xlim(-span * 1.15, span * 1.6)  # room on the right for the labels
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("Δ vs control, points on a 0-100 scale (95% CI)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def loss_curves(curves: Sequence[tuple[str, str, Sequence[tuple[float, float]]]]) -> str | None:
    fig = loss_figure(curves)
    return _png(fig) if fig is not None else None


def loss_figure(curves: Sequence[tuple[str, str, Sequence[tuple[float, float]]]]) -> Any:
    """Training loss against step, one panel per base model (losses on different bases are not on one
    scale), one line per run with a recorded curve."""
    curves = [(label, base, pts) for label, base, pts in curves if pts]
    if not curves:
        return None
    bases = list(dict.fromkeys(base for _, base, _ in curves))
    fig = _figure(6.5, 2.6 * len(bases) + 0.4)
    for k, base in enumerate(bases):
        ax = fig.add_subplot(len(bases), 1, k + 1)
        for j, (label, b, pts) in enumerate(curves):
            if b != base:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, color=_colour(j),
                    marker="." if len(pts) < 30 else None)
        ax.set_ylabel("training loss")
        ax.set_title(f"base {base}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_xlabel("step")
    fig.suptitle("Training loss (from the run manifests)", fontsize=10)
    return fig
