"""The eps sweep: retention for several eps from one pass of scores, as a table and a PNG plot.

An item's score is its max cosine to a better-ranked item of its cluster (``semdedup_pairwise``); it is
removed at eps when ``score >= 1 - eps``, so retention(eps) = mean(score < 1 - eps) for every eps at once. The
paper reruns its pipeline per eps; one pass is equivalent because the score does not depend on eps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def removed_mask(scores: np.ndarray, eps: float) -> np.ndarray:
    """True where an item is removed at ``eps``."""
    return scores >= 1.0 - eps


def sweep_table(scores: np.ndarray, eps_values: Sequence[float]) -> list[dict[str, Any]]:
    """One row per eps (ascending): threshold, kept, removed, retention."""
    n = len(scores)
    rows = []
    for eps in sorted(set(float(e) for e in eps_values)):
        removed = int(removed_mask(scores, eps).sum())
        rows.append(
            {
                "eps": eps,
                "threshold": round(1.0 - eps, 6),
                "kept": n - removed,
                "removed": removed,
                "retention": round((n - removed) / n, 6) if n else 1.0,
            }
        )
    return rows


def sweep_figure(
    table: list[dict[str, Any]], chosen_eps: float | None = None, title: str = "SemDedup"
) -> Any:
    """Retention against eps (a bare matplotlib figure)."""
    from data_pipes.plots import new_figure, text_width_in

    fig = new_figure(max(5.5, text_width_in([f"{title}: retention by eps"], 12) + 1.0), 3.4)
    ax = fig.add_subplot()
    eps = [r["eps"] for r in table]
    ax.plot(eps, [100 * r["retention"] for r in table], marker="o")
    if chosen_eps is not None:
        ax.axvline(chosen_eps, color="grey", linestyle="--", label=f"eps = {chosen_eps}")
        ax.legend(loc="best")
    ax.set_xlabel("eps (removed when max cosine >= 1 - eps)")
    ax.set_ylabel("documents kept (%)")
    ax.set_title(f"{title}: retention by eps")
    ax.grid(alpha=0.3)
    return fig


def sweep_png(table: list[dict[str, Any]], chosen_eps: float | None = None, title: str = "SemDedup") -> bytes:
    """``sweep_figure`` as PNG bytes."""
    from data_pipes.plots import png_bytes

    return png_bytes(sweep_figure(table, chosen_eps, title))


def cluster_size_table(bounds: np.ndarray) -> list[dict[str, Any]]:
    """Summary of cluster sizes (from the rank order's offsets)."""
    sizes = np.diff(bounds)
    if len(sizes) == 0:
        return []
    nonempty = sizes[sizes > 0]
    return [
        {
            "clusters": int(len(sizes)),
            "non_empty": int(len(nonempty)),
            "singletons": int((sizes == 1).sum()),
            "min": int(nonempty.min()) if len(nonempty) else 0,
            "median": float(np.median(nonempty)),
            "mean": round(float(nonempty.mean()), 2),
            "max": int(sizes.max()),
        }
    ]
