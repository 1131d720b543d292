"""The dedup phases as functions of parquet paths, for the orchestrator's shard tasks.

Every phase writes whole files atomically (temporary name, then rename) and returns at once when its output
is already there, so a killed node redoes only the missing phase outputs. Documents are named by their
64-bit key ``shard << 32 | row`` (:func:`.bands.doc_keys`) over all input shards in order.

MinHash: :func:`signature_phase` (per shard) -> :func:`bucket_phase` (per band) -> :func:`cluster_phase`
(one task, over the pairs only). Exact: :func:`exact_hash_phase` (per shard) ->
:func:`exact_partition_phase` (per hash partition). Both end in :func:`write_assignments`: one table of the
dropped documents (doc key, the kept document's id, cluster number) that the final per-shard step reads with
:func:`shard_assignments`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from data_pipes.dedup.bands import ROW_BITS, band_table, doc_keys
from data_pipes.dedup.buckets import band_pairs_from_parquet
from data_pipes.dedup.clusters import Clusters, connected_components
from data_pipes.dedup.normalise import normalise_text
from data_pipes.dedup.params import ExactDedupParams, MinHashParams
from data_pipes.dedup.signatures import minhash_signatures
from data_pipes.io.atomic import atomic_path

ASSIGN_ROW_GROUP = 1 << 16


def write_atomic(table: pa.Table, path: str, row_group_size: int | None = None) -> None:
    """Write ``table`` under a temporary name, then rename (the engine removes ``.tmp-`` leftovers)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size or None)


def _texts(in_path: str, column: str) -> list[str]:
    return [t or "" for t in pq.read_table(in_path, columns=[column]).column(column).to_pylist()]


# ---- MinHash -----------------------------------------------------------------------------------------------
def signature_phase(
    in_path: str, shard: int, out_path: str, params: MinHashParams, column: str = "text"
) -> str:
    """Write the band table of one documents shard, one row group per band (a band task reads its own)."""
    if not os.path.exists(out_path):
        table = band_table(minhash_signatures(_texts(in_path, column), params), shard, params)
        write_atomic(table, out_path, row_group_size=max(1, table.num_rows // params.num_bands))
    return out_path


def bucket_phase(band_paths: Sequence[str], band: int, out_path: str) -> int:
    """Write the candidate pairs (columns ``a``, ``b``: doc keys) of one band; returns the pair count."""
    if not os.path.exists(out_path):
        pairs = band_pairs_from_parquet(band_paths, band)
        write_atomic(pa.table({"a": pairs[:, 0], "b": pairs[:, 1]}), out_path)
    return pq.read_metadata(out_path).num_rows


def cluster_phase(pair_paths: Sequence[str], out_path: str) -> str:
    """Union-find over every band's pairs; writes ``doc``, ``root``, ``cluster`` of clustered documents."""
    if not os.path.exists(out_path):
        tables = [pq.read_table(p) for p in pair_paths]
        pairs = np.stack(
            [
                np.concatenate([t["a"].to_numpy() for t in tables] or [np.empty(0, np.int64)]),
                np.concatenate([t["b"].to_numpy() for t in tables] or [np.empty(0, np.int64)]),
            ],
            axis=1,
        )
        clusters = connected_components(pairs)
        write_atomic(
            pa.table({"doc": clusters.doc, "root": clusters.root, "cluster": clusters.cluster}), out_path
        )
    return out_path


def read_clusters(path: str) -> Clusters:
    t = pq.read_table(path)
    return Clusters(doc=t["doc"].to_numpy(), root=t["root"].to_numpy(), cluster=t["cluster"].to_numpy())


# ---- exact -------------------------------------------------------------------------------------------------
def exact_hash_phase(
    in_path: str, shard: int, out_path: str, params: ExactDedupParams, partitions: int, column: str = "text"
) -> str:
    """Write the 128-bit xxh3 hashes of one shard's normalised texts, one row group per hash partition.

    Columns ``part`` (h0 mod ``partitions``), ``h0``, ``h1``, ``doc``. Documents whose normalised text is
    empty (no letters or digits at all) are left out: they are kept, never anyone's duplicate (departure from
    hashing every text; two punctuation-only pages are not the same document).
    """
    if os.path.exists(out_path):
        return out_path
    normalised = [normalise_text(t, params.norm) for t in _texts(in_path, column)]
    rows = np.fromiter((i for i, t in enumerate(normalised) if t), dtype=np.int64)
    digests = b"".join(xxhash.xxh3_128_digest(normalised[i].encode("utf-8")) for i in rows)
    h = np.frombuffer(digests, dtype=np.uint64).reshape(rows.size, 2)
    part = (h[:, 0] % np.uint64(partitions)).astype(np.uint16)
    order = np.argsort(part, kind="stable")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    schema = pa.schema([("part", pa.uint16()), ("h0", pa.uint64()), ("h1", pa.uint64()), ("doc", pa.int64())])
    table = pa.table(
        {"part": part[order], "h0": h[order, 0], "h1": h[order, 1], "doc": doc_keys(shard, rows[order])},
        schema=schema,
    )
    bounds = np.searchsorted(table["part"].to_numpy(), np.arange(partitions + 1))
    with atomic_path(out_path) as writer_path, pq.ParquetWriter(writer_path, schema) as writer:
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            if hi > lo:
                writer.write_table(table.slice(lo, hi - lo))
    return out_path


def exact_partition_phase(hash_paths: Sequence[str], part: int, out_path: str) -> int:
    """Duplicates among one hash partition: writes ``doc`` and ``root`` (the smallest doc key with the
    same hash), sorted by doc; returns how many."""
    if not os.path.exists(out_path):
        tables = [
            pq.read_table(p, columns=["h0", "h1", "doc"], filters=[("part", "=", part)]) for p in hash_paths
        ]
        h0 = np.concatenate([t["h0"].to_numpy() for t in tables] or [np.empty(0, np.uint64)])
        h1 = np.concatenate([t["h1"].to_numpy() for t in tables] or [np.empty(0, np.uint64)])
        doc = np.concatenate([t["doc"].to_numpy() for t in tables] or [np.empty(0, np.int64)])
        order = np.lexsort((doc, h1, h0))
        h0, h1, doc = h0[order], h1[order], doc[order]
        new = np.ones(doc.size, dtype=bool)
        new[1:] = (h0[1:] != h0[:-1]) | (h1[1:] != h1[:-1])
        root = doc[np.maximum.accumulate(np.where(new, np.arange(doc.size), 0))] if doc.size else doc
        dup = np.flatnonzero(~new)
        by_doc = dup[np.argsort(doc[dup])]
        write_atomic(pa.table({"doc": doc[by_doc], "root": root[by_doc]}), out_path)
    return pq.read_metadata(out_path).num_rows


def read_duplicates(paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(doc, root) of every partition's duplicates, sorted by doc."""
    tables = [pq.read_table(p) for p in paths]
    doc = np.concatenate([t["doc"].to_numpy() for t in tables] or [np.empty(0, np.int64)])
    root = np.concatenate([t["root"].to_numpy() for t in tables] or [np.empty(0, np.int64)])
    order = np.argsort(doc)
    return doc[order], root[order]


# ---- shared end: who is dropped, in favour of which id -----------------------------------------------------
def ids_of(in_path: str, rows: Sequence[int], column: str = "id") -> list[str]:
    """The ids of ``rows`` of one documents shard (the kept documents that duplicates point to)."""
    ids = pq.read_table(in_path, columns=[column]).column(column)
    return ids.take(pa.array(np.asarray(rows, dtype=np.int64))).to_pylist()


def roots_by_shard(roots: np.ndarray) -> dict[int, np.ndarray]:
    """Distinct root doc keys grouped by shard: {shard: sorted rows}."""
    unique = np.unique(roots)
    shards, rows = unique >> ROW_BITS, unique & ((1 << ROW_BITS) - 1)
    return {int(s): rows[shards == s] for s in np.unique(shards)}


def write_assignments(
    out_path: str,
    doc: np.ndarray,
    root: np.ndarray,
    root_ids: dict[int, str],
    cluster: np.ndarray | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """The dropped documents: ``doc`` (sorted), ``duplicate_of`` (the kept document's id), optional
    ``cluster``; ``metadata`` (phase figures for the report) goes into the file's schema metadata."""
    order = np.argsort(doc, kind="stable")
    columns: dict[str, pa.Array | np.ndarray] = {
        "doc": doc[order],
        "duplicate_of": pa.array([root_ids[int(r)] for r in root[order]], type=pa.string()),
    }
    if cluster is not None:
        columns["cluster"] = cluster[order]
    table = pa.table(columns).replace_schema_metadata(metadata or {})
    write_atomic(table, out_path, row_group_size=ASSIGN_ROW_GROUP)


def shard_assignments(path: str, shard: int) -> pa.Table:
    """The assignment rows of one shard (row-group statistics on the sorted ``doc`` column skip the rest)."""
    lo, hi = int(doc_keys(shard, 0)), int(doc_keys(shard + 1, 0))
    return pq.read_table(path, filters=[("doc", ">=", lo), ("doc", "<", hi)])
