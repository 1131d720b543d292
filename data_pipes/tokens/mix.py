"""Mixing: how many times each document appears in the packed output.

A document of input ``node`` with ``epochs`` e (the column quality buckets and code tiers write; 1 when
absent) under the declared mixing weight w of its input appears ``r = floor(w * e) + Bernoulli(frac(w * e))``
times. The Bernoulli draw is a hash of ``(seed, node, document id)``, so a document's count depends on the
document alone, never on sharding, order or worker count, and the expected count is exactly ``w * e``. Weights
are multipliers of appearance counts, not shares of the output: ``{web: 1.0, code: 2.0}`` shows every code
document twice as often as its own epochs say. Our convention, not the GLM-4.5 report's (which gives target
epochs only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

_UNIT = float(1 << 53)


def unit_draw(seed: int, node: str, doc_id: str) -> float:
    """A uniform number in [0, 1) from ``(seed, node, doc_id)``, stable across processes and versions."""
    digest = hashlib.blake2b(f"{seed}\x1f{node}\x1f{doc_id}".encode("utf-8", "surrogatepass"), digest_size=8)
    return (int.from_bytes(digest.digest(), "little") >> 11) / _UNIT


def repeat_counts(ids: Sequence[str], epochs: np.ndarray, weight: float, node: str, seed: int) -> np.ndarray:
    """``int64`` appearance counts of the documents ``ids`` (see the module docstring)."""
    target = np.clip(np.nan_to_num(np.asarray(epochs, dtype=np.float64), nan=1.0), 0.0, None) * float(weight)
    whole = np.floor(target)
    frac = target - whole
    counts = whole.astype(np.int64)
    for i in np.nonzero(frac > 0)[0].tolist():
        counts[i] += unit_draw(seed, node, ids[i]) < frac[i]
    return counts
