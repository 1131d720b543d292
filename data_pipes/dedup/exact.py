"""Exact dedup on normalised text: the first document by (shard, row) of each text is kept.

Map phase: a 128-bit xxh3 hash of each document's normalised text (the same normalisation as MinHash, see
:mod:`.normalise`, so documents that differ only in case, punctuation, numbers or spacing are duplicates).
Reduce phase: one global ``np.unique`` over all hashes. Dropped rows get reason ``exact_duplicate``.

Departure from datatrove's exact dedup (which hashes the raw text with sha1/xxhash per document): hashing the
normalised text catches reformatted copies too; set ``norm`` flags off to hash closer to the raw text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xxhash

from data_pipes.dedup.bands import doc_keys
from data_pipes.dedup.normalise import normalise_text
from data_pipes.dedup.params import ExactDedupParams

DUPLICATE_REASON = "exact_duplicate"


@dataclass(frozen=True)
class ExactResult:
    """Per shard: ``keep`` (bool per row), ``duplicate_of`` (doc key of the kept copy, -1 for kept rows)."""

    keep: list[np.ndarray]
    duplicate_of: list[np.ndarray]

    @property
    def n_duplicates(self) -> int:
        return int(sum((~k).sum() for k in self.keep))


def exact_hashes(texts: Sequence[str], params: ExactDedupParams | None = None) -> np.ndarray:
    """Map phase: uint64 array (n_docs, 2), the 128-bit xxh3 digest of each normalised text."""
    params = params or ExactDedupParams()
    digests = b"".join(xxhash.xxh3_128_digest(normalise_text(t, params.norm).encode("utf-8")) for t in texts)
    return np.frombuffer(digests, dtype=np.uint64).reshape(len(texts), 2).copy()


def exact_duplicates(shard_hashes: Sequence[np.ndarray]) -> ExactResult:
    """Reduce phase over every shard's :func:`exact_hashes`, in shard order."""
    sizes = [len(h) for h in shard_hashes]
    keys = np.concatenate([doc_keys(i, np.arange(n)) for i, n in enumerate(sizes)] or [np.empty(0, np.int64)])
    hashes = np.concatenate(list(shard_hashes) or [np.empty((0, 2), np.uint64)])
    # np.unique's return_index gives the first occurrence, and rows are concatenated in (shard, row) order
    _, first, inverse = np.unique(hashes, axis=0, return_index=True, return_inverse=True)
    first_of_row = first[inverse.reshape(-1)]
    keep = first_of_row == np.arange(keys.size)
    duplicate_of = np.where(keep, -1, keys[first_of_row])
    bounds = np.cumsum(sizes)[:-1]
    return ExactResult(keep=np.split(keep, bounds), duplicate_of=np.split(duplicate_of, bounds))


def exact_dedup(shards: Sequence[Sequence[str]], params: ExactDedupParams | None = None) -> ExactResult:
    """Both phases in one process over in-memory shards of raw texts."""
    return exact_duplicates([exact_hashes(texts, params) for texts in shards])
