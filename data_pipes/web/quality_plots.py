"""Score histograms as PNG bytes (matplotlib, Agg backend: no display needed), for node reports."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np


def histogram_png(
    counts: Sequence[float],
    edges: Sequence[float],
    *,
    title: str,
    xlabel: str,
    lines: Sequence[tuple[float, str]] = (),
) -> bytes:
    """A bar histogram from precomputed ``counts`` over ``edges`` (len(counts) + 1), with labelled vertical
    ``lines`` (e.g. bucket boundaries)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # a bare Figure: no pyplot state shared between threads

    fig = Figure(figsize=(7, 3.6), dpi=100)
    ax = fig.add_subplot()
    edges_arr = np.asarray(edges, dtype=float)
    ax.bar(edges_arr[:-1], counts, width=np.diff(edges_arr), align="edge", color="#4C78A8", edgecolor="white")
    top = max(counts) if len(counts) else 1
    for x, label in lines:
        ax.axvline(x, color="#E45756", linestyle="--", linewidth=1)
        ax.text(x, top, f" {label}", color="#E45756", fontsize=8, va="top", rotation=90)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("documents")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


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
