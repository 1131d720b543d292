"""Global percentile cut-offs whose driver memory does not grow with the corpus.

Each shard summarises its scores as a t-digest (``fastdigest``, a Rust t-digest, at most ``CENTROIDS``
centroids, about 16 KB); the driver merges them in shard order. Two modes use the merged digest:

- ``exact`` (default): the digest only brackets each cut-off. For a percentile at rank fraction f, a second pass
  over the shards counts the documents scoring above ``q(f + delta)`` and returns the (score, id hash) pairs
  scoring within ``[q(f - delta), q(f + delta)]``; the driver sorts only those pairs and picks the document at
  the exact rank, so the cut-offs are the same (score, hash) pairs as a full sort of the corpus would give. If
  the digest was off by more than ``delta`` (the rank falls outside the bracket), the bracket widens 4x and that
  cut-off is redone. The driver holds about ``2 * delta`` of the documents per cut-off (16 bytes each) plus the
  documents tied at the cut-off's score: with ``delta = 0.002``, 0.4% of the corpus instead of all of it.
- ``sketch``: one pass, constant driver memory: the cut-off is the digest's quantile itself, and documents
  scoring at or above it are in. The achieved share may differ from the requested one by the digest's rank
  error plus the documents tied at the scores next to the cut-off (the digest interpolates between distinct
  scores, and a tie block goes to one side whole). t-digest gives no worst-case guarantee (KLL does, but
  the KLL of Apache DataSketches draws its compaction coin flips from an unseeded generator, so the same
  corpus would give different buckets from run to run); at ``CENTROIDS = 1000`` the rank error measured over
  uniform, skewed, bimodal and heavy-tailed scores split across 1 to 64 shards stays below
  ``SKETCH_RANK_ERROR`` (0.1 percentage point), which the tests check against exact percentiles.

Digests are deterministic: the same scores merged in the same shard order give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

CENTROIDS = 1000
SKETCH_RANK_ERROR = 0.001  # fraction of the documents; stated bound, checked by the tests
DELTA = 0.002  # exact mode: first bracket half-width, as a fraction of the documents

Cutoff = tuple[float, int] | None  # (score, id hash) of the first document at or above; None: nothing is


@dataclass(frozen=True)
class ShardSummary:
    """Phase 1 of one shard: its scored documents, their digest and score range."""

    n: int
    digest: bytes
    lo: float
    hi: float


def summarise(scores: np.ndarray) -> ShardSummary:
    """The shard's ``ShardSummary`` (NaN scores must be filtered out first)."""
    from fastdigest import TDigest

    scores = np.asarray(scores, dtype=np.float64)
    digest = TDigest.from_values(scores.tolist(), max_centroids=CENTROIDS)
    lo, hi = (float(scores.min()), float(scores.max())) if scores.size else (math.inf, -math.inf)
    return ShardSummary(int(scores.size), digest.to_bytes(), lo, hi)


def merge(summaries: Sequence[ShardSummary]) -> Any:
    """The merged digest of all shards, in shard order (deterministic)."""
    from fastdigest import TDigest

    merged = TDigest.from_values([], max_centroids=CENTROIDS)
    for s in summaries:
        if s.n:
            merged.merge_inplace(TDigest.from_bytes(s.digest))
    return merged


def rank(p: float | Fraction, n: int) -> int:
    """Ascending rank of the first document at or above percentile ``p``: ``ceil(p n / 100)`` in exact rational
    arithmetic (60% of 100 is rank 60, not 61)."""
    return math.ceil((p if isinstance(p, Fraction) else Fraction(str(p))) * n / 100)


def sketch_cutoffs(digest: Any, n: int, percentiles: Sequence[float | Fraction]) -> list[Cutoff]:
    """``sketch`` mode: the digest's quantile per percentile; a document is in when its score is >= it."""
    out: list[Cutoff] = []
    for p in percentiles:
        k = rank(p, n)
        out.append(None if k >= n else (float(digest.quantile(k / n)), 0))
    return out


@dataclass(frozen=True)
class Bracket:
    """A score interval that should hold the document at ascending rank ``rank``."""

    rank: int
    lo: float
    hi: float


def brackets(digest: Any, n: int, ranks: Sequence[int], delta: float) -> list[Bracket]:
    """Score brackets ``[q(f - delta), q(f + delta)]`` around each rank's fraction f (the whole range from
    ``delta >= 1``)."""
    out = []
    for k in ranks:
        f = k / n
        lo = -math.inf if f - delta <= 0 else float(digest.quantile(f - delta))
        hi = math.inf if f + delta >= 1 else float(digest.quantile(f + delta))
        out.append(Bracket(k, lo, hi))
    return out


@dataclass(frozen=True)
class BracketPart:
    """One shard's answer for one bracket: documents scoring above it, and the pairs inside it."""

    above: int
    scores: np.ndarray
    hashes: np.ndarray


def bracket_parts(scores: np.ndarray, hashes: np.ndarray, wanted: Sequence[Bracket]) -> list[BracketPart]:
    """Phase 2 of one shard, for every bracket."""
    out = []
    for b in wanted:
        inside = (scores >= b.lo) & (scores <= b.hi)
        out.append(BracketPart(int((scores > b.hi).sum()), scores[inside], hashes[inside]))
    return out


def resolve(n: int, bracket: Bracket, parts: Sequence[BracketPart]) -> Cutoff | None:
    """The exact cut-off (score, hash) at ``bracket.rank``, or None when the bracket missed it (widen and redo).
    Pairs are ranked ascending by (score, hash), as a full sort of the corpus would rank them."""
    above = sum(p.above for p in parts)
    scores = np.concatenate([p.scores for p in parts]) if parts else np.zeros(0)
    hashes = np.concatenate([p.hashes for p in parts]) if parts else np.zeros(0, np.uint64)
    below = n - above - scores.size
    j = bracket.rank - below
    if not 0 <= j < scores.size:
        return None
    order = np.lexsort((hashes, scores))
    return float(scores[order[j]]), int(hashes[order[j]])


def bracket_memory(parts: Sequence[BracketPart]) -> int:
    """Pairs the driver holds for one bracket (16 bytes each)."""
    return int(sum(p.scores.size for p in parts))
