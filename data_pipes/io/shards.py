"""Atomic shard files with completion markers: the unit of parallelism, retry and resume.

A shard ``i`` of a node is done when ``_markers/part-0000i.json`` exists. The marker is written last, after the kept
rows (``part-0000i.parquet``), the dropped rows (``excluded/part-0000i.parquet``, with a ``reason`` column) and the
quarantined rows (``quarantine/part-0000i.parquet``, with an ``error`` column) are in place. Every file is written
under a temporary name and renamed, so a killed process leaves either a whole file or none, and a shard without a
marker is simply redone. The marker carries the shard's accounting and the content hash of its kept rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from data_pipes.io.atomic import atomic_write_bytes, remove_stale_temporaries

MARKERS = "_markers"
EXCLUDED = "excluded"
QUARANTINE = "quarantine"
ROW_GROUP_TARGET_BYTES = 128 * 1024 * 1024
PARQUET_COMPRESSION = "zstd"


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def marker_path(out_dir: str, index: int) -> str:
    return os.path.join(out_dir, MARKERS, f"part-{index:05d}.json")


@dataclass
class ShardResult:
    """The accounting of one finished shard (what its marker file holds)."""

    index: int
    rows_in: int
    kept: int
    dropped: int
    quarantined: int
    drop_reasons: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    content_hash: str = ""
    path: str = ""
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    rows_out: int = (
        -1
    )  # rows in the output shard; differs from `kept` only for N-to-M kinds (packing, grouping)

    def __post_init__(self) -> None:
        if self.rows_out < 0:
            self.rows_out = self.kept

    def check_balance(self) -> None:
        if self.rows_in != self.kept + self.dropped + self.quarantined:
            raise AssertionError(
                f"shard {self.index}: in={self.rows_in} != kept={self.kept} + dropped={self.dropped} "
                f"+ quarantined={self.quarantined}"
            )

    @classmethod
    def from_json(cls, data: dict) -> ShardResult:
        return cls(**data)


def _row_group_size(table: pa.Table) -> int:
    if table.num_rows == 0:
        return 1
    per_row = max(1, table.nbytes // table.num_rows)
    return max(1024, ROW_GROUP_TARGET_BYTES // per_row)


def write_parquet_atomic(table: pa.Table, path: str) -> str:
    """Write ``table`` to ``path`` atomically; returns the sha256 of the file's bytes."""
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression=PARQUET_COMPRESSION,
        row_group_size=_row_group_size(table),
        write_statistics=True,
    )
    data = sink.getvalue().to_pybytes()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _to_arrow(frame: pl.DataFrame | pa.Table) -> pa.Table:
    return frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame


def write_shard(
    out_dir: str,
    index: int,
    kept: pl.DataFrame | pa.Table,
    rows_in: int,
    dropped: pl.DataFrame | None = None,
    quarantined: pl.DataFrame | None = None,
    started: float | None = None,
    extra: dict | None = None,
    kept_in: int | None = None,
) -> ShardResult:
    """Write one shard's three outputs and then its marker. ``dropped`` needs a ``reason`` column and
    ``quarantined`` an ``error`` column; the accounting must balance.

    For kinds whose output rows are not input rows (N documents packed into M sequences, files grouped into
    repositories, prompts expanded into samples), pass ``kept_in``: how many *input* rows went into the output.
    The balance is then ``rows_in == kept_in + dropped + quarantined``, and ``rows_out`` records the output rows."""
    kept_table = _to_arrow(kept)
    name = shard_name(index)
    content_hash = write_parquet_atomic(kept_table, os.path.join(out_dir, name))
    drop_reasons: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    if dropped is not None and dropped.height:
        drop_reasons.update(dropped.get_column("reason").to_list())
        write_parquet_atomic(dropped.to_arrow(), os.path.join(out_dir, EXCLUDED, name))
    if quarantined is not None and quarantined.height:
        errors.update(e.split(":", 1)[0] for e in quarantined.get_column("error").to_list())
        write_parquet_atomic(quarantined.to_arrow(), os.path.join(out_dir, QUARANTINE, name))
    result = ShardResult(
        index=index,
        rows_in=rows_in,
        kept=kept_table.num_rows if kept_in is None else kept_in,
        rows_out=kept_table.num_rows,
        dropped=sum(drop_reasons.values()),
        quarantined=sum(errors.values()),
        drop_reasons=dict(sorted(drop_reasons.items())),
        errors=dict(sorted(errors.items())),
        content_hash=content_hash,
        path=os.path.join(out_dir, name),
        seconds=round(time.perf_counter() - started, 6) if started is not None else 0.0,
        extra=extra or {},
    )
    result.check_balance()
    atomic_write_bytes(marker_path(out_dir, index), json.dumps(asdict(result), sort_keys=True).encode())
    return result


def read_marker(out_dir: str, index: int) -> ShardResult | None:
    path = marker_path(out_dir, index)
    try:
        with open(path, "rb") as fh:
            return ShardResult.from_json(json.loads(fh.read()))
    except FileNotFoundError:
        return None


def clean_partial_files(out_dir: str) -> int:
    """Remove the temporary files killed writers left in ``out_dir``; returns how many were removed. A file
    whose writer still runs is kept (see ``data_pipes.io.atomic.remove_stale_temporaries``)."""
    return len(remove_stale_temporaries(out_dir))
