"""Phase 2 of packing, on the driver: one global best-fit-decreasing packing of the whole node's items, a
seeded shuffle of the rows, and the row plan cut into output shards.

The plan is a pure function of the work files (read in input-shard order) and the seed, so it does not depend
on the number of workers. Shard ``k`` gets rows ``[k * rows_per_shard, (k + 1) * rows_per_shard)`` of the
shuffled order, as ``_work/plan-k.parquet``: one line per segment (``row``, ``file``, ``offset``, ``length``,
``doc_start``, ``id``, ``source``, ``bucket``, ``node``) in row order. The documents dropped in phase 1 go to
``_work/dropped.parquet``; shard 0 reports them. A packed document is counted by the shard holding its first
row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from data_pipes.io.shards import write_parquet_atomic
from data_pipes.tokens.baseline import FillStats, bfd_stats, concat_chunk_stats
from data_pipes.tokens.bfd import pack_plan, split_items
from data_pipes.tokens.work import DROP_EMPTY, WORK_DIR, work_paths


@dataclass
class PlanResult:
    n_shards: int
    rows_per_shard: int
    rows: int
    dropped: int
    docs_in: int
    docs_packed: int
    bfd: FillStats
    baseline: FillStats
    docs_per_shard: list[int] = field(default_factory=list)  # packed documents counted by each shard
    mix: list[dict] = field(default_factory=list)  # tokens per node / source / bucket


def plan_path(out_dir: str, shard: int) -> str:
    return os.path.join(out_dir, WORK_DIR, f"plan-{shard:05d}.parquet")


def dropped_path(out_dir: str) -> str:
    return os.path.join(out_dir, WORK_DIR, "dropped.parquet")


def read_metas(out_dir: str, indices: list[int]) -> pl.DataFrame:
    frames = [
        pl.read_parquet(work_paths(out_dir, i)[1]).with_columns(pl.lit(i, pl.Int32).alias("file"))
        for i in indices
    ]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def _mix_table(docs: pl.DataFrame) -> list[dict]:
    """Tokens per (node, source, bucket): ``effective_epochs`` = packed / unique tokens of the documents
    packed; ``configured_epochs`` = the token-weighted mean of ``epochs`` x the node's weight over every
    non-empty document, and ``reached_epochs`` = packed tokens over those documents' tokens (the same
    figure once documents drawn 0 times count too), so the two can be set side by side."""
    keys = ("node", "source", "bucket")
    packed = (
        docs.filter(pl.col("repeats") > 0)
        .group_by(*keys)
        .agg(
            pl.len().alias("docs"),
            pl.col("n_tokens").sum().alias("unique_tokens"),
            (pl.col("n_tokens") * pl.col("repeats")).sum().alias("packed_tokens"),
        )
        .with_columns((pl.col("packed_tokens") / pl.col("unique_tokens")).round(4).alias("effective_epochs"))
    )
    weight = pl.col("weight") if "weight" in docs.columns else pl.lit(1.0)
    wanted = (
        docs.filter(pl.col("reason").is_null() | (pl.col("reason") != DROP_EMPTY))
        .group_by(*keys)
        .agg(
            pl.col("n_tokens").sum().alias("tokens_in"),
            (pl.col("n_tokens") * pl.col("epochs").fill_null(1.0) * weight).sum().alias("_configured"),
        )
    )
    return (
        wanted.join(packed, on=list(keys), how="left")
        .with_columns(
            pl.col("docs", "unique_tokens", "packed_tokens").fill_null(0),
            pl.col("effective_epochs").fill_null(0.0),
            (pl.col("_configured") / pl.col("tokens_in")).round(4).alias("configured_epochs"),
        )
        .with_columns((pl.col("packed_tokens") / pl.col("tokens_in")).round(4).alias("reached_epochs"))
        .select(
            *keys,
            "docs",
            "unique_tokens",
            "packed_tokens",
            "effective_epochs",
            "tokens_in",
            "configured_epochs",
            "reached_epochs",
        )
        .sort(*keys)
        .to_dicts()
    )


def build_plan(out_dir: str, indices: list[int], seq_len: int, seed: int, rows_per_shard: int) -> PlanResult:
    """Pack the work files ``indices`` and write the shard plans; see the module docstring."""
    docs = read_metas(out_dir, indices)
    if docs.width == 0:
        raise ValueError(f"{out_dir}: the document inputs have no shards; nothing to pack")
    write_parquet_atomic(
        docs.filter(pl.col("reason").is_not_null())
        .select("id", "source", "node", "bucket", "reason")
        .to_arrow(),
        dropped_path(out_dir),
    )
    n_tokens = docs.get_column("n_tokens").to_numpy()
    repeats = docs.get_column("repeats").to_numpy()
    items = split_items(n_tokens, repeats, seq_len)
    item_order, row_offsets = pack_plan(items, seq_len, seed)
    rows = len(row_offsets) - 1
    seg_doc = items.doc[item_order]
    seg_start = items.start[item_order]
    seg_row = np.repeat(np.arange(rows, dtype=np.int64), np.diff(row_offsets))
    segs = docs.select("id", "source", "bucket", "node", "file", "offset")[seg_doc].with_columns(
        pl.Series("row", seg_row),
        (pl.col("offset") + pl.Series(seg_start)).alias("offset"),
        pl.Series("length", items.length[item_order]),
        pl.Series("doc_start", seg_start),
    )
    n_shards = max(1, -(-rows // rows_per_shard))
    # a packed document is counted (kept) by the shard holding its first row: shard counts sum to the node's
    home = np.full(docs.height, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(home, seg_doc, seg_row)
    packed = home[home < np.iinfo(np.int64).max] // rows_per_shard
    docs_per_shard = np.bincount(packed, minlength=n_shards).tolist()
    for k in range(n_shards):
        lo, hi = (
            int(row_offsets[min(rows, k * rows_per_shard)]),
            int(row_offsets[min(rows, (k + 1) * rows_per_shard)]),
        )
        write_parquet_atomic(segs.slice(lo, hi - lo).to_arrow(), plan_path(out_dir, k))
    copy_len = np.repeat(n_tokens, np.where(repeats > 0, repeats, 0))
    return PlanResult(
        n_shards=n_shards,
        rows_per_shard=rows_per_shard,
        rows=rows,
        dropped=int(docs.get_column("reason").is_not_null().sum()),
        docs_in=docs.height,
        docs_packed=int((repeats > 0).sum()),
        bfd=bfd_stats(items, item_order, row_offsets, seq_len),
        baseline=concat_chunk_stats(copy_len, seq_len),
        mix=_mix_table(docs),
        docs_per_shard=docs_per_shard,
    )
