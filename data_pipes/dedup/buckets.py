"""Candidate pairs of one LSH band (reduce phase, one task per band).

Documents whose band hashes are equal fall in one bucket. As in datatrove, a bucket of k documents yields k -
1 pairs, each member chained to the bucket's first member, so the pair count stays linear; unlike datatrove,
the first member is the smallest document key, which makes the pairs independent of file and worker order.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_pipes.dedup.parts import read_part


def band_pairs(band_hash: np.ndarray, doc: np.ndarray) -> np.ndarray:
    """int64 array (n_pairs, 2) of (first member, other member) doc keys from one band's (hash, doc) rows."""
    band_hash = np.asarray(band_hash, dtype=np.uint64)
    doc = np.asarray(doc, dtype=np.int64)
    if band_hash.size < 2:
        return np.empty((0, 2), dtype=np.int64)
    order = np.lexsort((doc, band_hash))
    band_hash, doc = band_hash[order], doc[order]
    new_bucket = np.concatenate([[True], band_hash[1:] != band_hash[:-1]])
    first = doc[np.maximum.accumulate(np.where(new_bucket, np.arange(doc.size), 0))]
    members = ~new_bucket
    return np.stack([first[members], doc[members]], axis=1)


def band_rows(tables: Iterable[pa.Table], band: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate one band's (band_hash, doc) rows from per-shard band tables."""
    hashes, docs = [], []
    for table in tables:
        part = table.filter(pc.equal(table["band"], band))
        hashes.append(part["band_hash"].to_numpy())
        docs.append(part["doc"].to_numpy())
    if not hashes:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    return np.concatenate(hashes), np.concatenate(docs)


def band_pairs_from_parquet(paths: Iterable[str], band: int) -> np.ndarray:
    """The orchestrator's form of :func:`band_pairs`: read only ``band``'s row group of band-table files written
    by :func:`.parts.write_parts` (one per shard)."""
    tables = [read_part(p, band, ["band_hash", "doc"]) for p in paths]
    if not tables:
        return band_pairs(np.empty(0, np.uint64), np.empty(0, np.int64))
    return band_pairs(
        np.concatenate([t["band_hash"].to_numpy() for t in tables]),
        np.concatenate([t["doc"].to_numpy() for t in tables]),
    )
