"""Shared end of the global dedup kinds (not a kind itself): kept documents' ids, assignments, output shards.

A dedup kind's ``run`` finds the dropped documents over all input shards and writes them as files of
``(doc, root)`` doc-key pairs (plus ``cluster`` where the kind has clusters) and, from the same tasks, their
distinct roots, then calls :meth:`DedupKind.finish`. On the cluster: the roots' ids are looked up (one task per
group of consecutive shards, reading only the ``id`` column of the shards that hold a root; see
``tasks._groups``) and one assignment table written under ``_work/`` (one task); ``ctx.run_shards`` then writes one output shard per input shard: its kept rows unchanged,
its dropped rows with ``reason``, ``duplicate_of`` (the kept id) and, where the kind has clusters,
``cluster_id``. Every kept row gets ``dup_cluster_size``: how many input documents it stands for (1 for a
singleton; summed over the cluster's members when the input already has the column), the figure a
``quality_buckets`` node with ``rehydrate`` up-samples by. The driver only passes file paths, so its memory does
not grow with the corpus.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from pydantic import Field

from data_pipes.dedup.phases import (
    SIZE_COLUMN,
    assemble_assignments,
    merge_weights,
    root_ids_phase,
    shard_assignments,
    shard_sizes,
    weights_phase,
)
from data_pipes.io.shards import ShardResult
from tasks._groups import groups as shard_groups
from tasks._timing import timed
from tasks.base import KindParams, RunContext, ShardTask
from tasks.doc_map import DocumentMapKind

WORK = "_work"


class DedupParams(KindParams):
    """Params every global dedup kind has."""

    text_column: str = Field("text", description="the column compared")
    keep_work: bool = Field(False, description="keep the phase files under _work/ after the node finishes")


def _root_ids(item: tuple[list[tuple[str, int]], list[str], str, list[str]]) -> tuple[str, str | None]:
    """A group's roots' ids, and its shards' incoming cluster sizes in one file (None when it has none)."""
    shards, roots_paths, ids_dir, weights = item
    ids = root_ids_phase(shards, roots_paths, ids_dir)
    if not weights:
        return ids, None
    name = f"weights-{shards[0][1]:05d}-{shards[-1][1]:05d}.parquet"
    return ids, merge_weights(weights, os.path.join(ids_dir, name))


def _assemble(item: tuple[list[str], list[str], str, dict[str, str], list[str], str]) -> str:
    return assemble_assignments(*item)


def incoming_sizes(in_path: str, shard: int, work: str) -> str | None:
    """The shard's documents that arrive with a cluster size other than 1 (see ``weights_phase``), or None."""
    return weights_phase(in_path, shard, os.path.join(work, "weights", f"part-{shard:05d}.parquet"))


class DedupKind(DocumentMapKind):
    """Base of ``dedup_exact`` and ``dedup_minhash``: global over every input shard, in input order."""

    reason: ClassVar[str]
    cluster_word: ClassVar[str] = "clusters"
    packages: ClassVar[tuple[str, ...]] = ("polars", "pyarrow", "numpy", "xxhash")

    @staticmethod
    def work(ctx: RunContext, *name: str) -> str:
        return os.path.join(ctx.out_dir, WORK, *name)

    def finish(
        self,
        ctx: RunContext,
        tasks: list[ShardTask],
        find: Any,
    ) -> list[ShardResult]:
        """Write the assignments (unless a previous attempt did), run the output shards, drop ``_work/``.

        ``find()`` returns ``(paths of the duplicates' files, paths of their distinct roots' files (see
        ``roots_phase``), figures for the report, paths of the incoming cluster sizes' files)``; it is only called
        when the assignments are missing.
        """
        assign = self.work(ctx, "assignments.parquet")
        sizes = self.work(ctx, "kept_sizes.parquet")
        if not os.path.exists(assign):
            dup_paths, roots_paths, figures, weight_paths = find()
            # consecutive shards per task: each looks up a few ids, so one task per shard would be bound by the
            # per-task cost on the driver and the scheduler, and the assembly would read a file per shard
            ids_dir = self.work(ctx, "ids")
            # (the incoming cluster sizes' files of a group are merged there too: one file per group to assemble)
            items = [
                (
                    [(t.payload["path"], t.index) for t, _ in group],
                    roots_paths,
                    ids_dir,
                    [w for _, w in group if w is not None],
                )
                for group in shard_groups(list(zip(tasks, weight_paths, strict=True)))
            ]
            with timed(ctx, "root_ids_s"):
                looked_up = ctx.map(_root_ids, items, phase="assign", unit="tasks")
            id_paths = [i for i, _ in looked_up]
            meta = {k: str(v) for k, v in figures.items()}
            weights = [w for _, w in looked_up if w is not None]
            with timed(ctx, "assemble_s"):
                ctx.map(
                    _assemble,
                    [(dup_paths, id_paths, assign, meta, weights, sizes)],
                    phase="assign",
                    unit="tasks",
                )
        shard_tasks = [
            ShardTask(t.index, {**t.payload, "assign": assign, "sizes": sizes}, t.label) for t in tasks
        ]
        with timed(ctx, "write_s"):
            results = ctx.run_shards(shard_tasks)
        with timed(ctx, "report_s"):
            self.report(ctx, results, pq.read_metadata(assign).num_rows, pq.read_schema(assign).metadata)
        params: DedupParams = ctx.params  # type: ignore[assignment]
        if not params.keep_work:
            shutil.rmtree(self.work(ctx), ignore_errors=True)
        return results

    def report(self, ctx: RunContext, results: list[ShardResult], removed: int, meta: dict | None) -> None:
        """Clusters, a cluster-size histogram, documents removed and the kept documents by ``dup_cluster_size``
        (from the assignments' metadata, so a resumed run reports the same)."""
        meta = dict(meta or {})
        counts = json.loads(meta.pop(b"size_histogram", b"{}"))
        kept_counts = {int(k): v for k, v in json.loads(meta.pop(b"kept_size_histogram", b"{}")).items()}
        n_clusters = sum(counts.values())
        rows_in = sum(r.rows_in for r in results)
        lines = [
            f"**{rows_in:,}** documents in, **{n_clusters:,}** {self.cluster_word}, "
            f"**{removed:,}** documents removed ({removed / max(1, rows_in):.2%}), "
            f"**{rows_in - removed:,}** kept.",
        ]
        for key, value in sorted(meta.items()):
            lines.append(f"- {key.decode()}: {value.decode()}")
        table = size_histogram({int(k): v for k, v in counts.items()})
        ctx.add_report(f"{self.name} summary", markdown="\n".join(lines) + "\n", table=table)
        kept = rows_in - removed
        kept_counts[1] = kept - sum(kept_counts.values())
        rows = kept_size_histogram(kept_counts)
        md = [
            f"Kept documents by `{SIZE_COLUMN}`: the input documents each one stands for (itself and the copies "
            "removed in its favour, here and in earlier dedup nodes). A `quality_buckets` node with `rehydrate` "
            "up-samples by it.",
            "",
            f"| {SIZE_COLUMN} | kept documents | input documents they stand for |",
            "|---|---:|---:|",
            *(f"| {r[SIZE_COLUMN]} | {r['kept']:,} | {r['represented']:,} |" for r in rows),
        ]
        ctx.add_report(f"{self.name} cluster sizes", markdown="\n".join(md) + "\n", table=rows)

    def process(  # type: ignore[override]
        self, frame: pl.DataFrame, params: DedupParams, seed: int, task: ShardTask
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """One output shard: kept rows unchanged; dropped rows with reason, duplicate_of, cluster_id."""
        table = shard_assignments(task.payload["assign"], task.index)
        rows = (table["doc"].to_numpy() & ((1 << 32) - 1)).astype(np.int64)
        drop = np.zeros(frame.height, dtype=bool)
        drop[rows] = True
        size = (
            frame[SIZE_COLUMN].cast(pl.Int64).fill_null(1).to_numpy().copy()
            if SIZE_COLUMN in frame.columns
            else np.ones(frame.height, dtype=np.int64)
        )
        roots, root_sizes = shard_sizes(task.payload["sizes"], task.index)
        size[roots] = root_sizes
        kept = frame.with_columns(pl.Series(SIZE_COLUMN, size, dtype=pl.Int64)).filter(pl.Series(~drop))
        extra = [pl.Series("duplicate_of", table["duplicate_of"].to_pylist(), dtype=pl.String)]
        if "cluster" in table.column_names:
            extra.append(pl.Series("cluster_id", table["cluster"].to_numpy(), dtype=pl.Int64))
        # the table is sorted by doc key, i.e. by row, so its columns line up with the filtered rows
        dropped = frame.filter(pl.Series(drop)).with_columns(pl.lit(self.reason).alias("reason"), *extra)
        return kept, dropped


def _bins(counts: dict[int, int]) -> list[tuple[str, dict[int, int]]]:
    """``counts`` ({size: n}) split into labelled bins: exact sizes up to 5, then decades."""
    bins = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 10), (11, 100), (101, 1000), (1001, 1 << 62)]
    out = []
    for lo, hi in bins:
        chosen = {size: n for size, n in counts.items() if lo <= size <= hi and n}
        if chosen:
            out.append((str(lo) if lo == hi else (f"{lo}-{hi}" if hi < 1 << 62 else f">{lo - 1}"), chosen))
    return out


def kept_size_histogram(counts: dict[int, int]) -> list[dict[str, Any]]:
    """Kept documents by ``dup_cluster_size``, from ``{size: kept documents}``."""
    return [
        {SIZE_COLUMN: label, "kept": sum(c.values()), "represented": sum(s * n for s, n in c.items())}
        for label, c in _bins(counts)
    ]


def size_histogram(counts: dict[int, int]) -> list[dict[str, Any]]:
    """Clusters by size (the kept document included), from ``{size: clusters}``: exact sizes up to 5, then
    decades."""
    bins = [(2, 2), (3, 3), (4, 4), (5, 5), (6, 10), (11, 100), (101, 1000), (1001, 1 << 62)]
    rows = []
    for lo, hi in bins:
        chosen = {size: n for size, n in counts.items() if lo <= size <= hi}
        if chosen:
            label = str(lo) if lo == hi else (f"{lo}-{hi}" if hi < 1 << 62 else f">{lo - 1}")
            clusters = sum(chosen.values())
            documents = sum(size * n for size, n in chosen.items())
            rows.append(
                {
                    "cluster_size": label,
                    "clusters": clusters,
                    "documents": documents,
                    "removed": documents - clusters,
                }
            )
    return rows
