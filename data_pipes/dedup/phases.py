"""The dedup phases as functions of parquet paths, for the orchestrator's shard tasks.

Every phase writes whole files atomically (temporary name, then rename) and returns at once when its output
is already there, so a killed node redoes only the missing phase outputs. Documents are named by their
64-bit key ``shard << 32 | row`` (:func:`.bands.doc_keys`) over all input shards in order.

MinHash: :func:`signature_phase` (per shard) -> :func:`bucket_phase` (per band) -> :func:`star_phase` (per
band: connected components of its pairs, written as star edges ``doc -> root``) -> :func:`star_phase` again
over groups of star files, level by level, until one file is left (a merge tree: each task holds only the
documents of its group's clusters) -> :func:`number_clusters`. Exact: :func:`exact_hash_phase` (per shard) ->
:func:`exact_partition_phase` (per hash partition). The task that writes a duplicates file also writes its distinct
roots, sorted (:func:`roots_phase`); then, on workers, the roots' ids (:func:`root_ids_phase`, per group of
shards) and one table of the dropped documents (:func:`assemble_assignments`: doc key, the kept document's id, cluster number) that the final
per-shard step reads with :func:`shard_assignments`. The driver passes paths only: it holds no per-document
state.

Cluster sizes (rehydration, as FineWeb-2's ``minhash_cluster_size``): every kept document leaves with
``dup_cluster_size``, the number of input documents it stands for. When the input already has that column (an
earlier dedup node), a cluster's size is the sum of its members' sizes, so exact then MinHash dedup gives the
number of original documents: :func:`weights_phase` (per shard, beside the hash or signature phase) lists the
documents whose incoming size is not 1, :func:`assemble_assignments` adds them up per cluster and writes the
kept roots' sizes (:func:`shard_sizes` reads one shard's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from data_pipes.dedup.bands import ROW_BITS, band_table, doc_keys
from data_pipes.dedup.buckets import band_pairs_from_parquet
from data_pipes.dedup.clusters import connected_components
from data_pipes.dedup.normalise import normalise_text
from data_pipes.dedup.params import ExactDedupParams, MinHashParams
from data_pipes.dedup.parts import read_file, read_key_range, read_part, write_parts
from data_pipes.dedup.rehydrate import SIZE_COLUMN
from data_pipes.dedup.signatures import minhash_signatures
from data_pipes.io.atomic import atomic_path

ASSIGN_ROW_GROUP = 1 << 16
ROOTS_ROW_GROUP = 1 << 16


def write_atomic(table: pa.Table, path: str, row_group_size: int | None = None) -> None:
    """Write ``table`` under a temporary name, then rename (the engine removes ``.tmp-`` leftovers)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size or None)


def _texts(in_path: str, column: str) -> list[str]:
    return [t or "" for t in read_file(in_path, [column]).column(column).to_pylist()]


def _langs(in_path: str, column: str = "lang") -> list[str | None] | None:
    """The shard's ``lang`` codes (from ``langid``), which pick the word segmenter of unspaced languages for
    shingling; None when the shard has no such column (the script decides then)."""
    if column not in pq.read_schema(in_path).names:
        return None
    return read_file(in_path, [column]).column(column).cast(pa.string()).to_pylist()


def weights_phase(in_path: str, shard: int, out_path: str, column: str = SIZE_COLUMN) -> str | None:
    """The documents of one shard whose incoming cluster size (``column``, from an earlier dedup node) is not 1:
    ``doc`` (key), ``size``. None (and no file) when the shard has no such column. A null size counts as 1."""
    if column not in pq.read_schema(in_path).names:
        return None
    if not os.path.exists(out_path):
        sizes = read_file(in_path, [column]).column(column).to_numpy(zero_copy_only=False)
        sizes = np.nan_to_num(np.asarray(sizes, dtype=np.float64), nan=1.0).astype(np.int64)
        if (sizes < 1).any():
            row = int(np.flatnonzero(sizes < 1)[0])
            raise ValueError(
                f"{in_path}: row {row} has {column} = {int(sizes[row])}; a cluster size counts documents, so it "
                f"must be at least 1 (rename the column if it means something else)"
            )
        rows = np.flatnonzero(sizes != 1)
        write_atomic(pa.table({"doc": doc_keys(shard, rows), "size": sizes[rows]}), out_path)
    return out_path


def merge_weights(paths: Sequence[str], out_path: str) -> str:
    """The :func:`weights_phase` files of a group of shards in one file (``doc``, ``size``), so the assembly
    reads one file per group rather than one per shard."""
    if not os.path.exists(out_path):
        tables = [read_file(p, ["doc", "size"]) for p in paths]
        write_atomic(
            pa.concat_tables(tables)
            if tables
            else pa.table({"doc": pa.array([], pa.int64()), "size": pa.array([], pa.int64())}),
            out_path,
        )
    return out_path


# ---- MinHash -----------------------------------------------------------------------------------------------
def signature_phase(
    in_path: str, shard: int, out_path: str, params: MinHashParams, column: str = "text"
) -> str:
    """Write the band table of one documents shard, one row group per band (a band task reads its own,
    :func:`.parts.read_part`)."""
    if not os.path.exists(out_path):
        langs = _langs(in_path)
        table = band_table(minhash_signatures(_texts(in_path, column), params, langs), shard, params)
        write_parts(table, "band", params.num_bands, out_path)  # ordered by band: one row group per band
    return out_path


def bucket_phase(band_paths: Sequence[str], band: int, out_path: str) -> int:
    """Write the candidate pairs (columns ``a``, ``b``: doc keys) of one band; returns the pair count."""
    if not os.path.exists(out_path):
        pairs = band_pairs_from_parquet(band_paths, band)
        write_atomic(pa.table({"a": pairs[:, 0], "b": pairs[:, 1]}), out_path)
    return pq.read_metadata(out_path).num_rows


def _edges(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The two key columns of a pairs file (``a``, ``b``) or a star file (``doc``, ``root``)."""
    t = read_file(path)
    a, b = ("a", "b") if "a" in t.column_names else ("doc", "root")
    return t[a].to_numpy(), t[b].to_numpy()


def star_phase(paths: Sequence[str], out_path: str) -> int:
    """Connected components of the edges in ``paths`` (pairs or star files), written as star edges ``doc``,
    ``root`` (the component's smallest key) for every document but the roots, sorted by doc; returns how
    many. Merging stars this way gives the components of the union of all the original pairs."""
    if not os.path.exists(out_path):
        edges = [_edges(p) for p in paths]
        pairs = np.stack(
            [
                np.concatenate([a for a, _ in edges] or [np.empty(0, np.int64)]),
                np.concatenate([b for _, b in edges] or [np.empty(0, np.int64)]),
            ],
            axis=1,
        )
        clusters = connected_components(pairs)
        dropped = clusters.doc != clusters.root
        write_atomic(pa.table({"doc": clusters.doc[dropped], "root": clusters.root[dropped]}), out_path)
    return pq.read_metadata(out_path).num_rows


def number_clusters(star_path: str, out_path: str) -> str:
    """The final star file plus ``cluster``: clusters numbered densely in the order of their kept roots (so the
    numbers do not depend on sharding)."""
    if not os.path.exists(out_path):
        t = read_file(star_path)
        _, cluster = np.unique(t["root"].to_numpy(), return_inverse=True)
        write_atomic(t.append_column("cluster", pa.array(cluster.astype(np.int64).reshape(-1))), out_path)
    return out_path


# ---- exact -------------------------------------------------------------------------------------------------
def exact_hash_phase(
    in_path: str, shard: int, out_path: str, params: ExactDedupParams, partitions: int, column: str = "text"
) -> str:
    """Write the 128-bit xxh3 hashes of one shard's normalised texts, one row group per hash partition
    (:func:`.parts.write_parts`).

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
    schema = pa.schema([("part", pa.uint16()), ("h0", pa.uint64()), ("h1", pa.uint64()), ("doc", pa.int64())])
    table = pa.table(
        {"part": part[order], "h0": h[order, 0], "h1": h[order, 1], "doc": doc_keys(shard, rows[order])},
        schema=schema,
    )
    write_parts(table, "part", partitions, out_path)
    return out_path


def exact_partition_phase(hash_paths: Sequence[str], part: int, out_path: str) -> int:
    """Duplicates among one hash partition: writes ``doc`` and ``root`` (the smallest doc key with the
    same hash), sorted by doc; returns how many."""
    if not os.path.exists(out_path):
        tables = [read_part(p, part, ["h0", "h1", "doc"]) for p in hash_paths]
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


# ---- shared end: who is dropped, in favour of which id -----------------------------------------------------
def ids_of(in_path: str, rows: Sequence[int], column: str = "id") -> list[str]:
    """The ids of ``rows`` of one documents shard (the kept documents that duplicates point to)."""
    ids = read_file(in_path, [column]).column(column)
    return ids.take(pa.array(np.asarray(rows, dtype=np.int64))).to_pylist()


def roots_phase(dup_path: str, out_path: str) -> str:
    """The distinct roots (the kept documents the duplicates point to) of a ``doc``, ``root`` file, sorted, in
    row groups that :func:`root_ids_phase` bisects; written by the task that wrote ``dup_path``, so no task
    has to list every file's roots."""
    if not os.path.exists(out_path):
        roots = np.unique(read_file(dup_path, ["root"])["root"].to_numpy()).astype(np.int64)
        write_atomic(pa.table({"root": roots}), out_path, row_group_size=ROOTS_ROW_GROUP)
    return out_path


def root_ids_phase(shards: Sequence[tuple[str, int]], roots_paths: Sequence[str], out_dir: str) -> str:
    """The ids of the roots that ``shards`` hold (``(path, shard)`` pairs, consecutive shards) in one file,
    ``ids-<first>-<last>.parquet``, with ``root`` (doc key) and ``id``: each :func:`roots_phase` file gives the
    roots in the group's key range (its row groups bisected), and only the shards holding one are read (their
    ``id`` column). One task looks up several shards' few ids, and the assembly reads one file per group."""
    first, last = shards[0][1], shards[-1][1]
    out = os.path.join(out_dir, f"ids-{first:05d}-{last:05d}.parquet")
    if not os.path.exists(out):
        lo, hi = int(doc_keys(first, 0)), int(doc_keys(last + 1, 0))
        parts = [read_key_range(p, "root", lo, hi)["root"].to_numpy() for p in roots_paths]
        keys = np.sort(np.concatenate(parts or [np.empty(0, np.int64)])).astype(np.int64)
        roots, ids = [], []
        for path, shard in shards:
            a, b = np.searchsorted(keys, [int(doc_keys(shard, 0)), int(doc_keys(shard + 1, 0))])
            if b > a:
                roots.append(keys[a:b])
                ids.extend(ids_of(path, keys[a:b] & ((1 << ROW_BITS) - 1)))
        root = np.concatenate(roots) if roots else np.empty(0, np.int64)
        write_atomic(pa.table({"root": root, "id": pa.array(ids, pa.string())}), out)
    return out


def _weights(paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(doc keys sorted, sizes) of every :func:`weights_phase` file."""
    tables = [read_file(p) for p in paths]
    doc = np.concatenate([t["doc"].to_numpy() for t in tables] or [np.empty(0, np.int64)])
    size = np.concatenate([t["size"].to_numpy() for t in tables] or [np.empty(0, np.int64)])
    order = np.argsort(doc, kind="stable")
    return doc[order], size[order]


def _lookup(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray, default: int) -> np.ndarray:
    """``values`` of ``wanted`` keys in sorted ``keys``, ``default`` where absent."""
    pos = np.minimum(np.searchsorted(keys, wanted), max(keys.size - 1, 0))
    found = (keys[pos] == wanted) if keys.size else np.zeros(wanted.size, dtype=bool)
    return np.where(found, values[pos] if keys.size else default, default).astype(np.int64)


def cluster_sizes(
    doc: np.ndarray, root: np.ndarray, weight_paths: Sequence[str] = ()
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The kept roots (sorted), their cluster sizes (each member's incoming size, 1 by default, summed, the root
    included) and a histogram ``{size: kept documents}`` of every kept document whose size is not 1: the roots,
    and the unclustered documents that arrived with a size of their own."""
    wdoc, wsize = _weights(weight_paths)
    roots, inverse = np.unique(root, return_inverse=True)
    sizes = _lookup(wdoc, wsize, roots, 1)
    np.add.at(sizes, inverse.reshape(-1), _lookup(wdoc, wsize, doc, 1))
    clustered = np.concatenate([doc, roots])
    alone = wsize[~np.isin(wdoc, clustered)]  # kept as they are, with the size they came with
    return roots, sizes, size_counts(np.concatenate([sizes, alone]))


def assemble_assignments(
    dup_paths: Sequence[str],
    id_paths: Sequence[str],
    out_path: str,
    metadata: dict[str, str] | None = None,
    weight_paths: Sequence[str] = (),
    sizes_path: str | None = None,
) -> str:
    """One table of the dropped documents, sorted by ``doc``: ``duplicate_of`` (the kept document's id) and,
    when the duplicate files have it, ``cluster``. The schema metadata holds ``metadata`` (phase figures for the
    report), the cluster-size histogram (``size_histogram``: clusters of this node by their size here) and the
    kept documents by ``dup_cluster_size`` (``kept_size_histogram``, sizes other than 1), JSON, so the report reads
    no rows. ``sizes_path`` (written first; the assignments file is the phase's completion mark) gets the kept
    roots' cluster sizes: ``doc``, ``size``, sorted by doc."""
    if not os.path.exists(out_path):
        dups = pa.concat_tables([read_file(p) for p in dup_paths]) if dup_paths else None
        ids = pa.concat_tables([read_file(p) for p in id_paths]) if id_paths else None
        doc = dups["doc"].to_numpy() if dups is not None else np.empty(0, np.int64)
        root = dups["root"].to_numpy() if dups is not None else np.empty(0, np.int64)
        cluster = dups["cluster"].to_numpy() if dups is not None and "cluster" in dups.column_names else None
        root_keys = ids["root"].to_numpy() if ids is not None else np.empty(0, np.int64)
        order = np.argsort(root_keys)
        where = order[np.searchsorted(root_keys[order], root)] if root.size else np.empty(0, np.int64)
        id_column = ids["id"].take(pa.array(where)) if ids is not None else pa.array([], pa.string())
        _, sizes = np.unique(root, return_counts=True)
        roots, kept_sizes, kept_histogram = cluster_sizes(doc, root, weight_paths)
        if sizes_path is not None:
            write_atomic(
                pa.table({"doc": roots, "size": kept_sizes}), sizes_path, row_group_size=ASSIGN_ROW_GROUP
            )
        meta = {
            **(metadata or {}),
            "size_histogram": json.dumps(size_counts(sizes + 1)),
            "kept_size_histogram": json.dumps(kept_histogram),
        }
        write_assignments(out_path, doc, id_column, cluster, meta)
    return out_path


def size_counts(sizes: np.ndarray) -> dict[str, int]:
    """How many clusters have each size (documents, the kept one included)."""
    values, counts = np.unique(np.asarray(sizes, dtype=np.int64), return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}


def write_assignments(
    out_path: str,
    doc: np.ndarray,
    duplicate_of: pa.Array,
    cluster: np.ndarray | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """The dropped documents: ``doc`` (sorted), ``duplicate_of`` (the kept document's id), optional
    ``cluster``; ``metadata`` goes into the file's schema metadata."""
    order = np.argsort(doc, kind="stable")
    columns: dict[str, pa.Array | np.ndarray] = {
        "doc": doc[order],
        "duplicate_of": duplicate_of.take(pa.array(order)),
    }
    if cluster is not None:
        columns["cluster"] = cluster[order]
    table = pa.table(columns).replace_schema_metadata(metadata or {})
    write_atomic(table, out_path, row_group_size=ASSIGN_ROW_GROUP)


def shard_assignments(path: str, shard: int) -> pa.Table:
    """The assignment rows of one shard (:func:`.parts.read_key_range` over the sorted ``doc`` column). Every
    output shard calls this twice; ``pq.read_table`` with a filter costs about 1 ms more a call."""
    return read_key_range(path, "doc", int(doc_keys(shard, 0)), int(doc_keys(shard + 1, 0)))


def shard_sizes(path: str, shard: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cluster sizes) of one shard's kept roots, from the ``sizes_path`` of :func:`assemble_assignments`."""
    table = shard_assignments(path, shard)
    return table["doc"].to_numpy() & ((1 << ROW_BITS) - 1), table["size"].to_numpy()
