"""`dedup_report`: what each dedup method removed and how the methods overlap.

Inputs: two or more dedup nodes (``dedup_exact``, ``dedup_minhash``, a semantic dedup, ... or any node with
exclusions), each named a *method* after its node id. The kind reads only their exclusion shards
(``<output>/excluded/*.parquet``: ``id``, ``reason``) and reports:

* per method: documents removed, the share of its input, its drop reasons;
* a Venn-style count table: ids removed by each combination of methods (both, only one, ...);
* pairwise overlaps (both, only either, Jaccard of the removed sets) and a PNG bar chart.

Accounting: the node's own output is one small shard with one row per (method, id) removed (``id``,
``method``, ``reason``), so ``in`` = the rows read from the exclusion shards = ``kept``; nothing is dropped.
This keeps the engine's ``in = kept + dropped + quarantined`` invariant without a special case for report
nodes, and the shard is a handy input for later analysis (join it with the documents to look at what only
one method removed).

The counts are taken in that shard's task, on a worker, and travel to the driver in its result (a few rows per
method and per combination of methods), so the driver never reads the removed ids. The task itself holds every
removed (id, method, reason) row: about 60 bytes per removed document, plus one Python string per removed id
of each method for the pairwise counts.
"""

from __future__ import annotations

import glob
import itertools
import os
import time
from typing import Any, ClassVar

import polars as pl

from data_pipes.dedup.overlap_plot import overlap_png
from data_pipes.io.shards import EXCLUDED, ShardResult, write_shard
from tasks.base import DataType, Kind, KindParams, RunContext, ShardTask
from tasks.registry import register

SCHEMA = {"id": pl.String, "method": pl.String, "reason": pl.String}


def read_removed(method: str, out_dir: str) -> pl.DataFrame:
    """The (id, method, reason) rows of one node's exclusion shards, in shard order."""
    files = sorted(glob.glob(os.path.join(out_dir, EXCLUDED, "part-*.parquet")))
    frames = [pl.read_parquet(f, columns=["id", "reason"]) for f in files]
    if not frames:
        return pl.DataFrame(schema=SCHEMA)
    return pl.concat(frames).select(
        pl.col("id").cast(pl.String), pl.lit(method).alias("method"), pl.col("reason").cast(pl.String)
    )


def combinations(removed: pl.DataFrame, methods: list[str]) -> list[dict[str, Any]]:
    """Venn-style counts: for every non-empty combination of methods, the ids removed by exactly those."""
    per_id = removed.group_by("id").agg(pl.col("method").unique())
    counts: dict[tuple[str, ...], int] = {}
    for found in per_id.get_column("method").to_list():
        key = tuple(m for m in methods if m in found)
        counts[key] = counts.get(key, 0) + 1
    if len(methods) <= 4:  # small enough to list every region of the Venn diagram, empty ones too
        for size in range(1, len(methods) + 1):
            for key in itertools.combinations(methods, size):
                counts.setdefault(key, 0)
    rows = []
    for key, n in sorted(counts.items(), key=lambda kv: (-len(kv[0]), [methods.index(m) for m in kv[0]])):
        label = " and ".join(key) if len(key) > 1 else f"only {key[0]}"
        rows.append({"removed_by": label, **{m: m in key for m in methods}, "documents": n})
    return rows


def pairwise(removed: pl.DataFrame, methods: list[str]) -> list[dict[str, Any]]:
    sets = {m: set(removed.filter(pl.col("method") == m).get_column("id").to_list()) for m in methods}
    rows = []
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            both, union = len(sets[a] & sets[b]), len(sets[a] | sets[b])
            rows.append(
                {
                    "method_a": a,
                    "method_b": b,
                    "both": both,
                    "only_a": len(sets[a] - sets[b]),
                    "only_b": len(sets[b] - sets[a]),
                    "jaccard": round(both / union, 4) if union else 0.0,
                }
            )
    return rows


@register
class DedupReport(Kind):
    name: ClassVar[str] = "dedup_report"
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.DOCUMENTS,)
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int | None] = None
    output_type: ClassVar[DataType] = DataType.REPORT
    packages = ("polars", "matplotlib")
    description = "what each dedup method removed and the overlap between methods"

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        methods = [(i.name, i.path) for i in ctx.inputs]
        return [ShardTask(0, {"methods": methods}, label="removed ids")]

    def run_shard(self, params: KindParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:
        started = time.perf_counter()
        removed = pl.concat([read_removed(m, p) for m, p in task.payload["methods"]])
        return write_shard(
            out_dir,
            task.index,
            removed,
            rows_in=removed.height,
            started=started,
            extra=counts(removed, [m for m, _ in task.payload["methods"]]),
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        found = results[0].extra  # the counts from the worker: the driver reads no removed id
        methods = [i.name for i in ctx.inputs]
        per_method = []
        for inp in ctx.inputs:
            mine = found["removed"][inp.name]
            seen = sum(inp.rows) + mine
            per_method.append(
                {
                    "method": inp.name,
                    "input_documents": seen,
                    "removed": mine,
                    "removed_share": round(mine / seen, 4) if seen else 0.0,
                    "reasons": ", ".join(f"{r} {n}" for r, n in found["reasons"][inp.name]),
                }
            )
        venn, pairs = found["venn"], found["pairs"]
        ctx.add_report("Removed by method", table=per_method)
        ctx.add_report("Overlap between methods", table=venn, png=overlap_png(venn) if venn else None)
        ctx.add_report("Pairwise overlap", table=pairs)
        ctx.add_report("Dedup summary", markdown=_markdown(per_method, venn, pairs, methods, found["union"]))


def counts(removed: pl.DataFrame, methods: list[str]) -> dict[str, Any]:
    """The report's counts from the (id, method, reason) rows (JSON-able, for the shard's result): per method
    the documents removed and its reasons by count, the Venn and pairwise tables, the distinct ids removed."""
    reasons = {}
    for m in methods:
        mine = removed.filter(pl.col("method") == m).get_column("reason")
        reasons[m] = [[r, n] for r, n in mine.value_counts(sort=True).rows()]
    return {
        "removed": {m: int(removed.filter(pl.col("method") == m).height) for m in methods},
        "reasons": reasons,
        "venn": combinations(removed, methods),
        "pairs": pairwise(removed, methods),
        "union": int(removed.get_column("id").n_unique()),
    }


def _markdown(
    per_method: list[dict], venn: list[dict], pairs: list[dict], methods: list[str], union: int
) -> str:
    lines = [
        f"# Dedup report: {', '.join(methods)}",
        "",
        f"**{union:,}** distinct documents removed by at least one method.",
        "",
        "| method | input documents | removed | share | reasons |",
        "|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['method']} | {r['input_documents']:,} | {r['removed']:,} | {r['removed_share']:.2%} | "
        f"{r['reasons']} |"
        for r in per_method
    ]
    lines += [
        "",
        "## Overlap (Venn counts)",
        "",
        "| removed by | " + " | ".join(methods) + " | documents |",
        "|---|" + "---|" * len(methods) + "---:|",
    ]
    lines += [
        f"| {r['removed_by']} | "
        + " | ".join("x" if r[m] else "" for m in methods)
        + f" | {r['documents']:,} |"
        for r in venn
    ]
    lines += ["", "## Pairwise", ""]
    lines += [
        f"- {p['method_a']} and {p['method_b']}: {p['both']:,} removed by both, {p['only_a']:,} only by "
        f"{p['method_a']}, {p['only_b']:,} only by {p['method_b']} (Jaccard {p['jaccard']:.2f})"
        for p in pairs
    ]
    return "\n".join(lines) + "\n"
