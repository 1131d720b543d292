"""A score column's summary (histogram, mean, percentiles) from mergeable per-shard parts: no per-document array
on the driver.

Three steps, so the driver holds a few numbers per shard and a bounded number of digests, whatever the corpus:

1. ``shard_stats`` (in the shard task, on the scores it just computed): count, NaN/null count, sum, min, max and
   the count at or above 0.5. Six numbers; they go into the shard's result.
2. ``merge_stats`` and ``edges`` on the driver: the totals and the histogram's bins over the global range, the
   same bins as ``quality_plots.histogram`` on all the scores ([0, 1] when the scores fit in it).
3. ``GroupSummary`` on the workers, over consecutive groups of shards (``groups``: at most ``MAX_GROUPS``): reads
   only the score column, counts it into those bins and merges the shards' t-digests (``quantiles``, the sketch
   ``quality_buckets`` uses); the driver adds the counts and merges at most ``MAX_GROUPS`` digests.

Counts, mean, min, max and the share at or above 0.5 are exact. Percentiles come from the merged digest: the
document at the reported value's rank is within ``quantiles.SKETCH_RANK_ERROR`` of the corpus (0.1 percentage
point; measured there, over 1 to 64 shards) plus one document of interpolation between neighbouring scores, where
``np.quantile`` would give the exact order statistic. Groups are consecutive shards in shard order, so the same
scores give the same bytes at any worker count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from data_pipes.web import quality_plots as plots
from data_pipes.web import quantiles

MAX_GROUPS = 256  # digests the driver merges at the end (16 KB each at most)
BINS = 50


def shard_stats(scores: np.ndarray) -> dict[str, Any]:
    """One shard's exact, mergeable statistics (JSON-able; NaN scores counted apart, left out of the rest)."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = scores[~np.isnan(scores)]
    return {
        "n": int(finite.size),
        "nan": int(scores.size - finite.size),
        "sum": float(finite.sum()),
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "ge_0_5": int((finite >= 0.5).sum()),
    }


def merge_stats(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The corpus's statistics from its shards' (in shard order; the sum is exactly rounded, ``math.fsum``)."""
    lows = [p["min"] for p in parts if p["n"]]
    highs = [p["max"] for p in parts if p["n"]]
    return {
        "n": sum(p["n"] for p in parts),
        "nan": sum(p["nan"] for p in parts),
        "sum": math.fsum(p["sum"] for p in parts),
        "min": min(lows) if lows else None,
        "max": max(highs) if highs else None,
        "ge_0_5": sum(p["ge_0_5"] for p in parts),
    }


def edges(stats: dict[str, Any], bins: int = BINS) -> list[float]:
    """The histogram's bins over the corpus's range, as ``quality_plots.histogram`` would choose them."""
    if not stats["n"]:
        return plots.histogram(np.zeros(0), bins)[1]
    return plots.histogram(np.array([stats["min"], stats["max"]]), bins)[1]


def groups(paths: Sequence[str], max_groups: int = MAX_GROUPS) -> list[list[str]]:
    """``paths`` cut into at most ``max_groups`` consecutive groups of equal size (the last may be smaller)."""
    size = max(1, math.ceil(len(paths) / max_groups))
    return [list(paths[i : i + size]) for i in range(0, len(paths), size)]


def bin_counts(scores: np.ndarray, edges: Sequence[float]) -> list[int]:
    """``scores`` counted into the bins ``edges`` (clipped to their range, as the plot shows them): the counts
    ``quality_plots.histogram`` gives for those bins."""
    lo, hi = float(edges[0]), float(edges[-1])
    clipped = np.clip(np.asarray(scores, dtype=np.float64), lo, hi)
    return np.histogram(clipped, bins=len(edges) - 1, range=(lo, hi))[0].tolist()


@dataclass(frozen=True)
class GroupPart:
    """A group of shards' histogram counts and merged digest."""

    counts: list[int]
    summary: quantiles.ShardSummary


class GroupSummary:
    """Worker task: a group of shards' counts into ``edges`` and their merged t-digest (NaN and null left out)."""

    def __init__(self, column: str, edges: Sequence[float]) -> None:
        self.column, self.edges = column, [float(e) for e in edges]

    def __call__(self, paths: Sequence[str]) -> GroupPart:
        counts = np.zeros(len(self.edges) - 1, dtype=np.int64)
        parts = []
        for path in paths:
            column = pl.read_parquet(path, columns=[self.column])[self.column].cast(pl.Float64)
            scores = column.drop_nulls().drop_nans().to_numpy()
            counts += np.asarray(bin_counts(scores, self.edges), dtype=np.int64)
            parts.append(quantiles.summarise(scores))
        merged = quantiles.merge(parts)
        n = sum(p.n for p in parts)
        low = min((p.lo for p in parts), default=math.inf)
        high = max((p.hi for p in parts), default=-math.inf)
        return GroupPart(counts.tolist(), quantiles.ShardSummary(n, merged.to_bytes(), low, high))


def merge_groups(parts: Sequence[GroupPart], bins: int = BINS) -> tuple[list[int], Any]:
    """The corpus's histogram counts and merged digest, from its groups' (in group order)."""
    counts = np.zeros(bins, dtype=np.int64)
    for p in parts:
        counts += np.asarray(p.counts, dtype=np.int64)
    return counts.tolist(), quantiles.merge([p.summary for p in parts])


def percentiles(digest: Any, n: int, fractions: Sequence[float]) -> list[float]:
    """The digest's quantile at each fraction (an empty corpus has none)."""
    return [float(digest.quantile(f)) for f in fractions] if n else []
