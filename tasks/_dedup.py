"""Shared end of the global dedup kinds (not a kind itself): kept documents' ids, assignments, output shards.

A dedup kind's ``run`` finds the dropped documents as ``(doc, root)`` doc-key pairs over all input shards,
then calls :meth:`DedupKind.finish`: the ids of the kept roots are looked up on the cluster (one task per
shard that holds a root, reading only the ``id`` column), one assignment table is written under ``_work/``,
and ``ctx.run_shards`` writes one output shard per input shard: its kept rows unchanged, its dropped rows
with ``reason``, ``duplicate_of`` (the kept id) and, where the kind has clusters, ``cluster_id``.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from data_pipes.dedup.phases import ids_of, roots_by_shard, shard_assignments, write_assignments
from data_pipes.io.shards import ShardResult
from tasks.base import KindParams, RunContext, ShardTask
from tasks.doc_map import DocumentMapKind

WORK = "_work"


class DedupParams(KindParams):
    """Params every global dedup kind has."""

    text_column: str = Field("text", description="the column compared")
    keep_work: bool = Field(False, description="keep the phase files under _work/ after the node finishes")


def _lookup(item: tuple[str, np.ndarray]) -> list[str]:
    return ids_of(item[0], item[1])


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

        ``find()`` returns ``(doc, root, cluster or None, figures for the report)``; it is only called
        when the assignments are missing.
        """
        assign = self.work(ctx, "assignments.parquet")
        if not os.path.exists(assign):
            doc, root, cluster, figures = find()
            by_shard = roots_by_shard(root)
            items = [(tasks[s].payload["path"], rows) for s, rows in by_shard.items()]
            found = ctx.map(_lookup, items)
            root_ids = {
                (s << 32) | int(r): i
                for (s, rows), ids in zip(by_shard.items(), found, strict=True)
                for r, i in zip(rows.tolist(), ids, strict=True)
            }
            write_assignments(assign, doc, root, root_ids, cluster, {k: str(v) for k, v in figures.items()})
        shard_tasks = [ShardTask(t.index, {**t.payload, "assign": assign}, t.label) for t in tasks]
        results = ctx.run_shards(shard_tasks)
        self.report(
            ctx, results, pq.read_table(assign, columns=["duplicate_of"]), pq.read_schema(assign).metadata
        )
        params: DedupParams = ctx.params  # type: ignore[assignment]
        if not params.keep_work:
            shutil.rmtree(self.work(ctx), ignore_errors=True)
        return results

    def report(
        self, ctx: RunContext, results: list[ShardResult], dropped: pa.Table, meta: dict | None
    ) -> None:
        """Clusters, a cluster-size histogram and documents removed (from the assignments, so a resumed run
        reports the same)."""
        sizes = (
            pc.value_counts(dropped["duplicate_of"]).field("counts").to_numpy() + 1
            if dropped.num_rows
            else []
        )
        rows_in = sum(r.rows_in for r in results)
        removed = dropped.num_rows
        lines = [
            f"**{rows_in:,}** documents in, **{len(sizes):,}** {self.cluster_word}, "
            f"**{removed:,}** documents removed ({removed / max(1, rows_in):.2%}), "
            f"**{rows_in - removed:,}** kept.",
        ]
        for key, value in sorted((meta or {}).items()):
            lines.append(f"- {key.decode()}: {value.decode()}")
        ctx.add_report(f"{self.name} summary", markdown="\n".join(lines) + "\n", table=size_histogram(sizes))

    def process(  # type: ignore[override]
        self, frame: pl.DataFrame, params: DedupParams, seed: int, task: ShardTask
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """One output shard: kept rows unchanged; dropped rows with reason, duplicate_of, cluster_id."""
        table = shard_assignments(task.payload["assign"], task.index)
        rows = (table["doc"].to_numpy() & ((1 << 32) - 1)).astype(np.int64)
        drop = np.zeros(frame.height, dtype=bool)
        drop[rows] = True
        kept = frame.filter(pl.Series(~drop))
        extra = [pl.Series("duplicate_of", table["duplicate_of"].to_pylist(), dtype=pl.String)]
        if "cluster" in table.column_names:
            extra.append(pl.Series("cluster_id", table["cluster"].to_numpy(), dtype=pl.Int64))
        # the table is sorted by doc key, i.e. by row, so its columns line up with the filtered rows
        dropped = frame.filter(pl.Series(drop)).with_columns(pl.lit(self.reason).alias("reason"), *extra)
        return kept, dropped


def size_histogram(sizes: Any) -> list[dict[str, Any]]:
    """Clusters by size (the kept document included): exact sizes up to 5, then decades."""
    sizes = np.asarray(sizes, dtype=np.int64)
    bins = [(2, 2), (3, 3), (4, 4), (5, 5), (6, 10), (11, 100), (101, 1000), (1001, 1 << 62)]
    rows = []
    for lo, hi in bins:
        chosen = sizes[(sizes >= lo) & (sizes <= hi)]
        if chosen.size:
            label = str(lo) if lo == hi else (f"{lo}-{hi}" if hi < 1 << 62 else f">{lo - 1}")
            rows.append(
                {
                    "cluster_size": label,
                    "clusters": int(chosen.size),
                    "documents": int(chosen.sum()),
                    "removed": int(chosen.sum() - chosen.size),
                }
            )
    return rows
