"""The dedup overlap chart: one horizontal bar per combination of methods (documents removed by exactly those).

The combination labels ("web_exact and web_minhash and web_semdedup") are long, so the figure is sized from them
and the title is the figure's, left-aligned over the whole canvas, not centred over the narrow axes.
"""

from __future__ import annotations

from typing import Any

from data_pipes.plots import new_figure, png_bytes, text_width_in

TITLE = "Documents removed, by combination of methods"


def overlap_figure(venn: list[dict[str, Any]]) -> Any:
    """``venn``: rows with ``removed_by`` (label) and ``documents`` (count), as ``dedup_report`` computes them."""
    from matplotlib.ticker import MaxNLocator

    labels = [r["removed_by"] for r in venn][::-1]
    values = [int(r["documents"]) for r in venn][::-1]
    width = max(7.0, text_width_in(labels) + 4.5, text_width_in([TITLE], 12) + 0.5)
    fig = new_figure(width, 0.42 * len(venn) + 1.5)
    ax = fig.add_subplot()
    ax.barh(labels, values, color="#4c72b0")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,}", va="center")
    ax.set_xlabel("documents removed")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, max(values + [1]) * 1.15)  # room for the count after the longest bar
    fig.suptitle(TITLE, x=0.01, ha="left", fontsize=12)
    return fig


def overlap_png(venn: list[dict[str, Any]]) -> bytes:
    return png_bytes(overlap_figure(venn))
