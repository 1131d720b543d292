"""Phase 2 of packing: best-fit-decreasing packing of the node's items in plan groups, a seeded shuffle of the
rows, and the row plan cut into output shards. Every step runs as a worker task; the driver holds only small
per-group figures, never per-document state.

Plan groups: the node's work files (one per input shard) are dealt round-robin into
``G = min(files, ceil(tokens / group_tokens))`` groups, so each group holds files of every input and a group's
rows are a mixture like the node's. Each group is packed on its own (``pack_group``: BFD, then a seeded shuffle
of its rows) and the groups' rows follow one another in group order. With one group (every node up to
``group_tokens`` tokens) this is one global BFD and shuffle, as in Ding et al.; with several, each group
leaves at most a few part-filled rows, so the fill stays within a hair of the global packing's (measured in
``benchmarks/pack.py --plan-groups``). The plan is a pure function of the work files (read in input-shard order),
the seed and ``group_tokens``, so it does not depend on the number of workers.

Output shard ``k`` gets rows ``[k * rows_per_shard, (k + 1) * rows_per_shard)`` as ``_work/plan-k.parquet``
(``cut_shard``): one line per segment (``row``, ``file``, ``offset``, ``length``, ``doc_start``, ``id``,
``source``, ``bucket``, ``node``) in row order. The documents dropped in phase 1 go to
``_work/dropped-g.parquet`` per group; shard 0 reports them. A packed document is counted by the shard holding
its first row (all copies of a document are in one group).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from data_pipes.io.shards import write_parquet_atomic
from data_pipes.tokens.baseline import FillStats, bfd_stats, concat_chunk_stats
from data_pipes.tokens.bfd import pack_plan, split_items
from data_pipes.tokens.concat_chunk import concat_chunk_plan
from data_pipes.tokens.tokenize import save_npy_atomic
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
    groups: int = 1


@dataclass(frozen=True)
class GroupResult:
    """What one plan group tells the driver: counts, fill statistics and per-(node, source, bucket) sums."""

    group: int
    rows: int
    docs_in: int
    docs_packed: int
    dropped: int
    bfd: FillStats
    baseline: FillStats
    mix: list[dict]


def plan_path(out_dir: str, shard: int) -> str:
    return os.path.join(out_dir, WORK_DIR, f"plan-{shard:05d}.parquet")


def dropped_path(out_dir: str, group: int) -> str:
    return os.path.join(out_dir, WORK_DIR, f"dropped-{group:05d}.parquet")


def dropped_paths(out_dir: str, n_groups: int) -> list[str]:
    """The dropped-document files of every plan group, in group order."""
    return [dropped_path(out_dir, g) for g in range(n_groups)]


def group_path(out_dir: str, group: int, what: str) -> str:
    return os.path.join(out_dir, WORK_DIR, f"group-{group:05d}.{what}")


def read_metas(out_dir: str, indices: list[int]) -> pl.DataFrame:
    frames = [
        pl.read_parquet(work_paths(out_dir, i)[1]).with_columns(pl.lit(i, pl.Int32).alias("file"))
        for i in indices
    ]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


MIX_KEYS = ("node", "source", "bucket")


def _mix_parts(docs: pl.DataFrame) -> list[dict]:
    """Per (node, source, bucket) sums of one group, merged over groups by ``_mix_table``."""
    packed = (
        docs.filter(pl.col("repeats") > 0)
        .group_by(*MIX_KEYS)
        .agg(
            pl.len().alias("docs"),
            pl.col("n_tokens").sum().alias("unique_tokens"),
            (pl.col("n_tokens") * pl.col("repeats")).sum().alias("packed_tokens"),
        )
    )
    weight = pl.col("weight") if "weight" in docs.columns else pl.lit(1.0)
    wanted = (
        docs.filter(pl.col("reason").is_null() | (pl.col("reason") != DROP_EMPTY))
        .group_by(*MIX_KEYS)
        .agg(
            pl.col("n_tokens").sum().alias("tokens_in"),
            (pl.col("n_tokens") * pl.col("epochs").fill_null(1.0) * weight).sum().alias("_configured"),
        )
    )
    return wanted.join(packed, on=list(MIX_KEYS), how="left").sort(*MIX_KEYS).to_dicts()


def _mix_table(parts: list[dict]) -> list[dict]:
    """Tokens per (node, source, bucket): ``effective_epochs`` = packed / unique tokens of the documents
    packed; ``configured_epochs`` = the token-weighted mean of ``epochs`` x the node's weight over every
    non-empty document, and ``reached_epochs`` = packed tokens over those documents' tokens (the same
    figure once documents drawn 0 times count too), so the two can be set side by side."""
    if not parts:
        return []
    sums = (
        pl.DataFrame(parts, infer_schema_length=None)
        .group_by(*MIX_KEYS)
        .agg(pl.col("docs", "unique_tokens", "packed_tokens", "tokens_in", "_configured").sum())
    )
    return (
        sums.with_columns(
            pl.col("docs", "unique_tokens", "packed_tokens").fill_null(0),
            (pl.col("packed_tokens") / pl.col("unique_tokens"))
            .round(4)
            .fill_nan(None)
            .alias("effective_epochs"),
            (pl.col("_configured") / pl.col("tokens_in")).round(4).alias("configured_epochs"),
        )
        .with_columns(
            pl.col("effective_epochs").fill_null(0.0),
            (pl.col("packed_tokens") / pl.col("tokens_in")).round(4).alias("reached_epochs"),
        )
        .select(
            *MIX_KEYS,
            "docs",
            "unique_tokens",
            "packed_tokens",
            "effective_epochs",
            "tokens_in",
            "configured_epochs",
            "reached_epochs",
        )
        .sort(*MIX_KEYS)
        .to_dicts()
    )


def _merge_fill(stats: list[FillStats]) -> FillStats:
    """The fill statistics of several packings side by side."""
    if len(stats) == 1:
        return stats[0]
    first = stats[0]
    rows, tokens = sum(s.rows for s in stats), sum(s.tokens for s in stats)
    return FillStats(
        first.method,
        first.seq_len,
        rows,
        tokens,
        sum(s.pad for s in stats),
        tokens / (rows * first.seq_len) if rows else 1.0,
        sum(s.docs for s in stats),
        sum(s.docs_split for s in stats),
        sum(s.short_docs_split for s in stats),
    )


def plan_groups(indices: list[int], tokens: list[int], group_tokens: int) -> list[list[int]]:
    """Work files dealt round-robin into ``min(files, ceil(total tokens / group_tokens))`` groups."""
    n = max(1, min(len(indices), math.ceil(sum(tokens) / max(1, group_tokens))))
    return [indices[g::n] for g in range(n)]


def group_seed(seed: int, group: int, n_groups: int) -> int | list[int]:
    """The shuffle seed of a group: the node's seed itself when there is one group."""
    return seed if n_groups == 1 else [seed, group]


def pack_group(
    out_dir: str,
    files: list[int],
    group: int,
    n_groups: int,
    seq_len: int,
    seed: int,
    method: str = "bfd",
) -> GroupResult:
    """Pack one group's work files: BFD, a seeded shuffle of its rows (``method`` ``concat_chunk``: the copies
    in a seeded order cut every ``seq_len`` tokens, ``data_pipes.tokens.concat_chunk``); writes
    ``group-g.parquet`` (segments in row order, rows numbered from 0 within the group), ``group-g.homes.npy``
    (the sorted first row of each packed document) and ``dropped-g.parquet``."""
    docs = read_metas(out_dir, files)
    if docs.width == 0:
        raise ValueError(f"{out_dir}: the document inputs have no shards; nothing to pack")
    write_parquet_atomic(
        docs.filter(pl.col("reason").is_not_null())
        .select("id", "source", "node", "bucket", "reason")
        .to_arrow(),
        dropped_path(out_dir, group),
    )
    n_tokens = docs.get_column("n_tokens").to_numpy()
    repeats = docs.get_column("repeats").to_numpy()
    if method == "concat_chunk":
        items, item_order, row_offsets = concat_chunk_plan(
            n_tokens, repeats, seq_len, group_seed(seed, group, n_groups)
        )
    else:
        items = split_items(n_tokens, repeats, seq_len)
        item_order, row_offsets = pack_plan(items, seq_len, group_seed(seed, group, n_groups))
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
    write_parquet_atomic(segs.to_arrow(), group_path(out_dir, group, "parquet"))
    home = np.full(docs.height, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(home, seg_doc, seg_row)
    homes = np.sort(home[home < np.iinfo(np.int64).max])
    save_npy_atomic(group_path(out_dir, group, "homes.npy"), homes)
    copy_len = np.repeat(n_tokens, np.where(repeats > 0, repeats, 0))
    return GroupResult(
        group=group,
        rows=rows,
        docs_in=docs.height,
        docs_packed=int((repeats > 0).sum()),
        dropped=int(docs.get_column("reason").is_not_null().sum()),
        bfd=bfd_stats(items, item_order, row_offsets, seq_len, method=method),
        baseline=concat_chunk_stats(copy_len, seq_len),
        mix=_mix_parts(docs),
    )


def cut_shard(out_dir: str, shard: int, rows_per_shard: int, group_rows: list[int]) -> int:
    """Write ``plan-k.parquet``: the segments of global rows ``[k * rows_per_shard, (k + 1) * rows_per_shard)``
    taken from the groups' plans (group g's rows start after all rows of the groups before it); returns the
    packed documents whose first row is in this shard."""
    starts = np.concatenate([[0], np.cumsum(group_rows)]).astype(np.int64)
    lo, hi = shard * rows_per_shard, min((shard + 1) * rows_per_shard, int(starts[-1]))
    parts, docs = [], 0
    for g in range(len(group_rows)):
        a, b = max(lo, int(starts[g])), min(hi, int(starts[g + 1]))
        if a >= b:
            continue
        local = (a - int(starts[g]), b - int(starts[g]))
        segs = pl.read_parquet(group_path(out_dir, g, "parquet")).filter(
            (pl.col("row") >= local[0]) & (pl.col("row") < local[1])
        )
        parts.append(segs.with_columns(pl.col("row") + int(starts[g])))
        homes = np.load(group_path(out_dir, g, "homes.npy"))
        docs += int(np.searchsorted(homes, local[1]) - np.searchsorted(homes, local[0]))
    frame = pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()
    write_parquet_atomic(frame.to_arrow(), plan_path(out_dir, shard))
    return docs


def finish_plan(groups: list[GroupResult], rows_per_shard: int, docs_per_shard: list[int]) -> PlanResult:
    """The node's plan figures from its groups' (small) results."""
    rows = sum(g.rows for g in groups)
    return PlanResult(
        n_shards=max(1, -(-rows // rows_per_shard)),
        rows_per_shard=rows_per_shard,
        rows=rows,
        dropped=sum(g.dropped for g in groups),
        docs_in=sum(g.docs_in for g in groups),
        docs_packed=sum(g.docs_packed for g in groups),
        bfd=_merge_fill([g.bfd for g in groups]),
        baseline=_merge_fill([g.baseline for g in groups]),
        mix=_mix_table([row for g in groups for row in g.mix]),
        docs_per_shard=docs_per_shard,
        groups=len(groups),
    )


def build_plan(
    out_dir: str,
    indices: list[int],
    seq_len: int,
    seed: int,
    rows_per_shard: int,
    tokens: list[int] | None = None,
    group_tokens: int = 1 << 62,
    mapper: object = None,
    method: str = "bfd",
) -> PlanResult:
    """Pack the work files ``indices`` (with ``tokens`` each, for the grouping) and write the shard plans; see
    the module docstring. ``mapper(fn, items)`` runs the group and cut tasks (default: in this process)."""
    run = mapper or (lambda fn, items: [fn(i) for i in items])
    groups = plan_groups(indices, tokens or [0] * len(indices), group_tokens)
    results = run(_GroupTask(out_dir, len(groups), seq_len, seed, method), list(enumerate(groups)))
    rows = sum(r.rows for r in results)
    n_shards = max(1, -(-rows // rows_per_shard))
    docs = run(_CutTask(out_dir, rows_per_shard, [r.rows for r in results]), list(range(n_shards)))
    return finish_plan(results, rows_per_shard, docs)


class _GroupTask:
    def __init__(self, out_dir: str, n_groups: int, seq_len: int, seed: int, method: str = "bfd") -> None:
        self.out_dir, self.n_groups, self.seq_len, self.seed = out_dir, n_groups, seq_len, seed
        self.method = method

    def __call__(self, item: tuple[int, list[int]]) -> GroupResult:
        return pack_group(self.out_dir, item[1], item[0], self.n_groups, self.seq_len, self.seed, self.method)


class _CutTask:
    def __init__(self, out_dir: str, rows_per_shard: int, group_rows: list[int]) -> None:
        self.out_dir, self.rows_per_shard, self.group_rows = out_dir, rows_per_shard, group_rows

    def __call__(self, shard: int) -> int:
        return cut_shard(self.out_dir, shard, self.rows_per_shard, self.group_rows)
