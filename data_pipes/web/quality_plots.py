"""Score histograms as PNG bytes (matplotlib, Agg backend: no display needed), for node reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from data_pipes.plots import new_figure, png_bytes, text_width_in


def histogram_figure(
    counts: Sequence[float],
    edges: Sequence[float],
    *,
    title: str,
    xlabel: str,
    lines: Sequence[tuple[float, str]] = (),
) -> Any:
    """A bar histogram from precomputed ``counts`` over ``edges`` (len(counts) + 1), with labelled vertical
    ``lines`` (e.g. bucket boundaries). The line labels sit in a band above the bars, so bars never hide them."""
    from matplotlib.ticker import MaxNLocator  # here: importing the module must not load matplotlib

    fig = new_figure(max(7.0, text_width_in([title], 12) + 1.0), 3.6)
    ax = fig.add_subplot()
    edges_arr = np.asarray(edges, dtype=float)
    ax.bar(edges_arr[:-1], counts, width=np.diff(edges_arr), align="edge", color="#4C78A8", edgecolor="white")
    top = float(max(counts)) if len(counts) else 1.0
    top = top if top > 0 else 1.0
    if lines:
        ax.set_ylim(0, top * 1.18)  # a band above the tallest bar for the labels
    lo, hi = ax.get_xlim()
    for x, label in lines:
        ax.axvline(x, color="#E45756", linestyle="--", linewidth=1)
        right = x > lo + 0.85 * (hi - lo)  # near the right edge: the label goes left of its line
        ax.text(
            x, top * 1.16, f"{label} " if right else f" {label}", color="#E45756", fontsize=8, va="top",
            ha="right" if right else "left",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )  # fmt: skip
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("documents")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def histogram_png(
    counts: Sequence[float],
    edges: Sequence[float],
    *,
    title: str,
    xlabel: str,
    lines: Sequence[tuple[float, str]] = (),
) -> bytes:
    """``histogram_figure`` as PNG bytes."""
    return png_bytes(histogram_figure(counts, edges, title=title, xlabel=xlabel, lines=lines))


def histogram(values: np.ndarray, bins: int = 50, lo: float | None = None, hi: float | None = None):
    """``(counts, edges)`` of ``values`` over [lo, hi] (default: their range; [0, 1] when they fit in it)."""
    values = np.asarray(values, dtype=float)
    if lo is None or hi is None:
        vmin = float(values.min()) if values.size else 0.0
        vmax = float(values.max()) if values.size else 1.0
        if 0.0 <= vmin and vmax <= 1.0:
            vmin, vmax = 0.0, 1.0
        lo = vmin if lo is None else lo
        hi = vmax if hi is None else hi
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
    return counts.tolist(), edges.tolist()
