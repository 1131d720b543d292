"""Phase files cut into parts (hash partitions, LSH bands) that a reduce task reads one part of, without a filter.

A map task of the global dedup kinds writes one file per input shard with one row group per part; a reduce task
then reads the same part of every shard's file: 1,200 files per task at 1,200 shards. ``pq.read_table`` with a
filter goes through the dataset layer (about 1 ms a file, even for a few hundred rows); opening the file and
reading the part's row group directly costs about a sixth of that, so the reduce phases are no longer bound by
opening files. The file's schema metadata (``parts``) lists the part of each row group, so empty parts take no
row group and a reader never scans statistics.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_pipes.io.atomic import atomic_path

PARTS_KEY = b"parts"


def write_parts(table: pa.Table, column: str, n_parts: int, path: str) -> None:
    """Write ``table`` (sorted by the integer ``column``, values in ``[0, n_parts)``) atomically with one row
    group per non-empty part, listed in the schema metadata."""
    keys = table[column].to_numpy()
    bounds = np.searchsorted(keys, np.arange(n_parts + 1))
    present = [p for p in range(n_parts) if bounds[p + 1] > bounds[p]]
    schema = table.schema.with_metadata({**(table.schema.metadata or {}), PARTS_KEY: json.dumps(present)})
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for p in present:
            lo, hi = int(bounds[p]), int(bounds[p + 1])
            writer.write_table(table.slice(lo, hi - lo).cast(schema), row_group_size=hi - lo)


def read_part(path: str, part: int, columns: Sequence[str]) -> pa.Table:
    """The rows of ``part`` (``columns`` only) of a file written by :func:`write_parts`; no rows when the part is
    empty there."""
    # one small row group: no pre-buffering nor threads (a third cheaper a file), the parts from the footer's
    # key-value metadata without building the Arrow schema
    pf = pq.ParquetFile(path, pre_buffer=False)
    present = json.loads((pf.metadata.metadata or {}).get(PARTS_KEY, b"[]"))
    if part not in present:
        return pf.schema_arrow.empty_table().select(list(columns))
    return pf.read_row_group(present.index(part), columns=list(columns), use_threads=False)


def read_file(path: str, columns: Sequence[str] | None = None) -> pa.Table:
    """A whole (small) phase file, without the dataset layer of ``pq.read_table``."""
    return pq.ParquetFile(path).read(columns=list(columns) if columns is not None else None)


def read_key_range(path: str, column: str, lo: int, hi: int) -> pa.Table:
    """The rows with ``lo <= column < hi`` of a file sorted by the integer ``column``: the row groups whose
    range meets ``[lo, hi)``, found by bisecting their statistics, then the slice of them in range."""
    pf = pq.ParquetFile(path)
    meta = pf.metadata
    index = pf.schema_arrow.get_field_index(column)

    def first_with_max_at_least(key: int) -> int:
        left, right = 0, meta.num_row_groups
        while left < right:
            mid = (left + right) // 2
            stats = meta.row_group(mid).column(index).statistics
            if stats is not None and stats.has_min_max and stats.max < key:
                left = mid + 1
            else:
                right = mid
        return left

    start, stop = first_with_max_at_least(lo), first_with_max_at_least(hi)
    stop = min(stop + 1, meta.num_row_groups)  # the group holding ``hi`` may also hold rows below it
    table = pf.read_row_groups(list(range(start, stop))) if stop > start else pf.schema_arrow.empty_table()
    first, last = np.searchsorted(table[column].to_numpy(), [lo, hi])
    return table.slice(int(first), int(last - first))
