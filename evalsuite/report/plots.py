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

    fig = Figure(figsize=(width, height), dpi=100)
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
                 errors: Sequence[Sequence[tuple[float, float] | None]], ylabel: str) -> str:
    """Bars per group (x) and label (colour), with asymmetric CI error bars where known.

    ``values[j][i]`` is label j in group i; None leaves a gap.
    """
    n = max(len(labels), 1)
    width = 0.8 / n
    fig = _figure(max(5.0, 1.2 + len(groups) * (0.35 + 0.18 * n)), 3.2)
    ax = fig.add_subplot()
    for j, label in enumerate(labels):
        xs = [i + (j - (n - 1) / 2) * width for i in range(len(groups))]
        ys = [v if v is not None else 0.0 for v in values[j]]
        err_lo = [(y - e[0]) if e else 0.0 for y, e in zip(ys, errors[j], strict=True)]
        err_hi = [(e[1] - y) if e else 0.0 for y, e in zip(ys, errors[j], strict=True)]
        ax.bar(xs, ys, width * 0.95, label=label, color=_colour(j),
               yerr=[[max(0.0, e) for e in err_lo], [max(0.0, e) for e in err_hi]], capsize=2,
               error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
    crowded = sum(len(g) for g in groups) > 8 * len(groups) or len(groups) > 5
    ax.set_xticks(range(len(groups)), list(groups), rotation=25 if crowded else 0,
                  ha="right" if crowded else "center", rotation_mode="anchor")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncols=min(n, 3), loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def loss_curves(curves: Sequence[tuple[str, Sequence[tuple[float, float]]]]) -> str | None:
    """Training loss against step, one line per run with a recorded curve."""
    curves = [(label, pts) for label, pts in curves if pts]
    if not curves:
        return None
    fig = _figure(6.5, 3.2)
    ax = fig.add_subplot()
    for j, (label, pts) in enumerate(curves):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, color=_colour(j),
                marker="." if len(pts) < 30 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss (from the run manifests)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def stacked_bars(title: str, labels: Sequence[str], parts: Sequence[str],
                 counts: Sequence[dict[str, int]]) -> str:
    """Horizontal 100% bars: the share of each part (finish reason) per label (column)."""
    fig = _figure(6.5, 0.6 + 0.45 * max(len(labels), 1))
    ax = fig.add_subplot()
    left = [0.0] * len(labels)
    totals = [max(sum(c.values()), 1) for c in counts]
    for k, part in enumerate(parts):
        widths = [c.get(part, 0) / t for c, t in zip(counts, totals, strict=True)]
        ax.barh(range(len(labels)), widths, left=left, label=part, color=_colour(k))
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(range(len(labels)), list(labels))
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of samples")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)
