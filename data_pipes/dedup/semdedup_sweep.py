"""The eps sweep: retention for several eps from one pass of scores, as a table and a PNG plot.

An item's score is its max cosine to a better-ranked item of its cluster (``semdedup_pairwise``); it is
removed at eps when ``score >= 1 - eps``, so retention(eps) = mean(score < 1 - eps) for every eps at once. The
paper reruns its pipeline per eps; one pass is equivalent because the score does not depend on eps.
"""

from __future__ import annotations

import io
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


def sweep_png(table: list[dict[str, Any]], chosen_eps: float | None = None, title: str = "SemDedup") -> bytes:
    """Retention against eps as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    eps = [r["eps"] for r in table]
    ax.plot(eps, [100 * r["retention"] for r in table], marker="o")
    if chosen_eps is not None:
        ax.axvline(chosen_eps, color="grey", linestyle="--", label=f"eps = {chosen_eps}")
        ax.legend()
    ax.set_xlabel("eps (removed when max cosine >= 1 - eps)")
    ax.set_ylabel("documents kept (%)")
    ax.set_title(f"{title}: retention by eps")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


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
