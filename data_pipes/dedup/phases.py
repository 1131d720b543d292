"""The MinHash phases as functions of parquet paths, for the orchestrator's shard tasks.

1. :func:`signature_phase` (one task per input shard): text column -> band-table parquet.
2. :func:`bucket_phase` (one task per band): every band table -> that band's candidate pairs parquet.
3. :func:`cluster_phase` (one task): every pairs file -> clusters parquet (doc, root, cluster).
4. :func:`filter_phase` (one task per input shard): clusters -> keep mask and cluster numbers for that shard.
Each writes whole files; the caller owns temporary names and renames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_pipes.dedup.buckets import band_pairs_from_parquet
from data_pipes.dedup.clusters import Clusters, connected_components
from data_pipes.dedup.minhash import assign_shard, shard_band_table
from data_pipes.dedup.params import MinHashParams


def signature_phase(
    in_path: str, shard: int, out_path: str, params: MinHashParams, column: str = "text"
) -> int:
    """Write the band table of one documents shard; returns its row count."""
    texts = pq.read_table(in_path, columns=[column]).column(column).to_pylist()
    pq.write_table(shard_band_table(texts, shard, params), out_path)
    return len(texts)


def bucket_phase(band_paths: Sequence[str], band: int, out_path: str) -> int:
    """Write the candidate pairs (columns ``a``, ``b``: doc keys) of one band; returns the pair count."""
    pairs = band_pairs_from_parquet(band_paths, band)
    pq.write_table(pa.table({"a": pairs[:, 0], "b": pairs[:, 1]}), out_path)
    return len(pairs)


def cluster_phase(pair_paths: Sequence[str], out_path: str) -> int:
    """Write the clusters of all pairs; returns the number of duplicates to drop."""
    tables = [pq.read_table(p) for p in pair_paths]
    pairs = np.stack(
        [
            np.concatenate([t["a"].to_numpy() for t in tables] or [np.empty(0, np.int64)]),
            np.concatenate([t["b"].to_numpy() for t in tables] or [np.empty(0, np.int64)]),
        ],
        axis=1,
    )
    clusters = connected_components(pairs)
    pq.write_table(
        pa.table({"doc": clusters.doc, "root": clusters.root, "cluster": clusters.cluster}), out_path
    )
    return int(clusters.duplicates.size)


def filter_phase(clusters_path: str, shard: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep mask and cluster numbers (-1 when in none) for one shard."""
    t = pq.read_table(clusters_path)
    clusters = Clusters(doc=t["doc"].to_numpy(), root=t["root"].to_numpy(), cluster=t["cluster"].to_numpy())
    return assign_shard(clusters, shard, n_rows)
