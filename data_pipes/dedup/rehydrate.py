"""Rehydration: up-sample kept documents by the size of the duplicate cluster they stood for (FineWeb-2).

Dedup keeps one document per cluster and records on it ``dup_cluster_size`` (1 for a singleton; see
``tasks._dedup``). FineWeb-2 (Penedo et al. 2025, arXiv 2506.20920; the dataset's README, "Deduplication") keeps
the same figure as ``minhash_cluster_size`` and repeats each kept document by a weight chosen from its cluster
size: documents copied a moderate number of times tend to be better than singletons, while very large clusters
(boilerplate, spam) tend to be worse. Their published weights, our default (``weights: fineweb2``):

| cluster size | 1 | 2 | 3 | 4 | 5 to 99 | 100 to 999 | 1000 and more |
|---|---|---|---|---|---|---|---|
| weight | 1 | 2 | 3 | 3 | 5 | 8 | 1 |

A weight map is written as FineWeb-2 writes it: ``{lower bound of a size range: weight}``, each range running to
the next bound; it must start at 1 so that every size has a weight. The weight multiplies the document's
``epochs`` (``quality_buckets``), and ``pack`` repeats each document ``epochs`` times (fractional parts drawn by a
seeded hash of the id, ``data_pipes.tokens.mix``), so the repeats depend on the document alone, never on sharding
or worker count. Departure: FineWeb-2 yields the document that many times in the data set; we keep one row and
let the packer repeat it, as for every other epoch count.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

SIZE_COLUMN = "dup_cluster_size"
FINEWEB2_WEIGHTS: dict[int, float] = {1: 1.0, 2: 2.0, 3: 3.0, 5: 5.0, 100: 8.0, 1000: 1.0}


class RehydrateParams(BaseModel):
    """``quality_buckets``' ``rehydrate`` block: which column holds the cluster size, and the weight map."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str = Field(
        SIZE_COLUMN, description="the cluster size column (written by dedup_exact / dedup_minhash)"
    )
    weights: Literal["fineweb2"] | dict[int, float] = Field(
        "fineweb2",
        description="`fineweb2` (1:1, 2:2, 3:3, 5:5, 100:8, 1000:1) or {lowest cluster size of a range: weight}, "
        "starting at 1; the weight multiplies the document's epochs",
    )

    @field_validator("weights")
    @classmethod
    def _check(cls, value: str | dict[int, float]) -> str | dict[int, float]:
        if isinstance(value, str):
            return value
        if 1 not in value:
            raise ValueError(
                f"the weight map must start at cluster size 1 (got bounds {sorted(value)}); add `1: 1` for "
                "singletons"
            )
        bad = {k: v for k, v in value.items() if k < 1 or v < 0}
        if bad:
            raise ValueError(f"cluster sizes start at 1 and weights are >= 0; fix {bad}")
        return dict(sorted(value.items()))

    def weight_map(self) -> dict[int, float]:
        return dict(FINEWEB2_WEIGHTS) if self.weights == "fineweb2" else dict(self.weights)  # type: ignore[arg-type]

    def ranges(self) -> list[tuple[str, int, float]]:
        """``(label, lower bound, weight)`` per range, for reports: ``"5-99"``, ``">=1000"``."""
        bounds = sorted(self.weight_map().items())
        out = []
        for i, (lo, w) in enumerate(bounds):
            hi = bounds[i + 1][0] - 1 if i + 1 < len(bounds) else None
            label = str(lo) if hi == lo else (f"{lo}-{hi}" if hi is not None else f">={lo}")
            out.append((label, lo, w))
        return out


def range_index(sizes: np.ndarray, weights: dict[int, float]) -> np.ndarray:
    """The index (into the sorted bounds) of the range each cluster size falls in; sizes below 1 count as 1."""
    bounds = np.array(sorted(weights), dtype=np.int64)
    sizes = np.maximum(np.asarray(sizes, dtype=np.int64), 1)
    return np.searchsorted(bounds, sizes, side="right") - 1


def weights_for(sizes: np.ndarray, weights: dict[int, float]) -> np.ndarray:
    """float64 repeat weight of each cluster size."""
    values = np.array([weights[k] for k in sorted(weights)], dtype=np.float64)
    return values[range_index(sizes, weights)]
