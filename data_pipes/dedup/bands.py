"""LSH band keys of a shard's signatures (map phase) and the document keys they carry.

For every document with a signature and every band, one 64-bit hash of the band's ``rows_per_band`` minhash
values. Documents are named by a 64-bit key ``shard << 32 | row``, so sorting keys sorts by (shard, row).

Departure from datatrove: datatrove writes the raw band values per bucket file and compares them whole while
merging sorted files; we compare one 64-bit hash per band (a false match needs a 2^-64 collision), which keeps
the band table small and lets the bucket step be a single numpy sort.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from data_pipes.dedup.params import MinHashParams
from data_pipes.dedup.signatures import has_signature

ROW_BITS = 32


def doc_keys(shard: int | np.ndarray, row: int | np.ndarray) -> np.ndarray:
    """64-bit document keys ordered like (shard, row)."""
    return (np.asarray(shard, dtype=np.int64) << ROW_BITS) | np.asarray(row, dtype=np.int64)


def split_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`doc_keys`: (shard, row) arrays."""
    keys = np.asarray(keys, dtype=np.int64)
    return keys >> ROW_BITS, keys & ((1 << ROW_BITS) - 1)


def _mix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(33))
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


def band_hashes(signatures: np.ndarray, params: MinHashParams) -> np.ndarray:
    """uint64 array (n_docs, num_bands): one hash of each band of each signature."""
    n_docs = signatures.shape[0]
    bands = signatures.reshape(n_docs, params.num_bands, params.rows_per_band).astype(np.uint64)
    h = np.full((n_docs, params.num_bands), 0x9E3779B97F4A7C15, dtype=np.uint64)
    for r in range(params.rows_per_band):  # order-sensitive fold of the band's values
        h = _mix64(h ^ bands[:, :, r])
    return h


def band_table(signatures: np.ndarray, shard: int, params: MinHashParams) -> pa.Table:
    """The band keys of one shard: columns ``band`` (uint16), ``band_hash`` (uint64), ``doc`` (int64 doc key).

    Rows are ordered by band, then row; documents without a signature are left out.
    """
    if signatures.shape[1] != params.num_perm:
        raise ValueError(
            f"signatures have {signatures.shape[1]} columns but params ask for "
            f"{params.num_bands} bands x {params.rows_per_band} rows = {params.num_perm}; use the same params"
        )
    rows = np.flatnonzero(has_signature(signatures))
    hashes = band_hashes(signatures[rows], params)  # (docs, bands)
    return pa.table(
        {
            "band": np.repeat(np.arange(params.num_bands, dtype=np.uint16), rows.size),
            "band_hash": hashes.T.reshape(-1),
            "doc": np.tile(doc_keys(shard, rows), params.num_bands),
        }
    )
