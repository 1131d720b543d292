"""MinHash near-duplicate dedup, all phases in one process (the orchestrator runs the phases separately).

Phases: signatures and band keys per shard (:mod:`.signatures`, :mod:`.bands`) -> candidate pairs per band
(:mod:`.buckets`) -> union-find over all pairs (:mod:`.clusters`) -> per shard, a keep mask and cluster ids
(:func:`assign_shard`). In a cluster the document with the smallest (shard, row) is kept and the others are
dropped with reason ``minhash_duplicate``. Results do not depend on the number of workers, and splitting the
same ordered documents into different shards keeps the same documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from data_pipes.dedup.bands import band_table, doc_keys
from data_pipes.dedup.buckets import band_pairs, band_rows
from data_pipes.dedup.clusters import Clusters, connected_components
from data_pipes.dedup.params import MinHashParams
from data_pipes.dedup.signatures import minhash_signatures

DUPLICATE_REASON = "minhash_duplicate"


@dataclass(frozen=True)
class MinHashResult:
    """Per shard: ``keep`` (bool per row) and ``cluster`` (int64 cluster number per row, -1 if in none)."""

    keep: list[np.ndarray]
    cluster: list[np.ndarray]
    clusters: Clusters
    n_pairs: int

    @property
    def n_duplicates(self) -> int:
        return int(sum((~k).sum() for k in self.keep))


def shard_band_table(texts: Sequence[str], shard: int, params: MinHashParams) -> pa.Table:
    """Map phase for one shard: raw texts -> band table (see :func:`.bands.band_table`)."""
    return band_table(minhash_signatures(texts, params), shard, params)


def assign_shard(clusters: Clusters, shard: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep mask and cluster numbers (-1 when unclustered) of the ``n_rows`` rows of ``shard``."""
    keys = doc_keys(shard, np.arange(n_rows))
    pos = np.searchsorted(clusters.doc, keys)
    found = pos < clusters.doc.size
    found[found] = clusters.doc[pos[found]] == keys[found]
    cluster = np.full(n_rows, -1, dtype=np.int64)
    cluster[found] = clusters.cluster[pos[found]]
    keep = np.ones(n_rows, dtype=bool)
    keep[found] = clusters.root[pos[found]] == keys[found]
    return keep, cluster


def _band_pairs_of(tables: list[pa.Table], band: int) -> np.ndarray:
    return band_pairs(*band_rows(tables, band))


def minhash_dedup(
    shards: Sequence[Sequence[str]], params: MinHashParams | None = None, workers: int = 1
) -> MinHashResult:
    """Run every phase over in-memory ``shards`` of raw texts; ``workers > 1`` uses a process pool."""
    params = params or MinHashParams()
    indices = list(range(len(shards)))
    bands = list(range(params.num_bands))
    pool: Executor | None = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        if pool is None:
            tables = [shard_band_table(texts, i, params) for i, texts in zip(indices, shards, strict=True)]
            band_results = [_band_pairs_of(tables, b) for b in bands]
        else:
            tables = list(pool.map(shard_band_table, shards, indices, [params] * len(shards)))
            band_results = list(pool.map(_band_pairs_of, [tables] * len(bands), bands))
    finally:
        if pool is not None:
            pool.shutdown()
    pairs = np.concatenate(band_results) if band_results else np.empty((0, 2), np.int64)
    clusters = connected_components(pairs)
    keep, cluster = zip(
        *(assign_shard(clusters, i, len(texts)) for i, texts in zip(indices, shards, strict=True)),
        strict=True,
    )
    return MinHashResult(keep=list(keep), cluster=list(cluster), clusters=clusters, n_pairs=int(len(pairs)))
