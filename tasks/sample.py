"""`sample`: a seeded fraction of the documents and/or the first N of them.

``fraction`` keeps a document when a seeded hash of its id falls below the fraction, so the choice depends on the
document alone, never on sharding or worker count. ``limit`` then keeps the first N selected documents in input
order: a first pass counts the selected rows per shard (reading only the id column), the quotas follow, and the
second pass writes the shards.
"""

from __future__ import annotations

import time
from typing import ClassVar

import polars as pl
from pydantic import Field, model_validator

from data_pipes.io.shards import ShardResult, write_shard
from tasks.base import KindParams, RunContext, ShardTask
from tasks.doc_map import DocumentMapKind, hash_unit
from tasks.registry import register


class SampleParams(KindParams):
    fraction: float | None = Field(None, gt=0, le=1, description="keep this share of documents (by id hash)")
    limit: int | None = Field(None, ge=0, description="then keep at most this many, in input order")
    seed: int = Field(0, description="added to the node seed")

    @model_validator(mode="after")
    def _one(self) -> SampleParams:
        if self.fraction is None and self.limit is None:
            raise ValueError("set `fraction`, `limit` or both")
        return self


def _selected(ids: pl.Series, params: SampleParams, seed: int) -> pl.Series:
    if params.fraction is None or params.fraction >= 1:
        return pl.Series([True] * len(ids), dtype=pl.Boolean)
    return hash_unit(ids, seed + params.seed) < params.fraction


def _count_selected(path: str, params: SampleParams, seed: int) -> int:
    return int(_selected(pl.read_parquet(path, columns=["id"]).get_column("id"), params, seed).sum())


@register
class Sample(DocumentMapKind):
    name: ClassVar[str] = "sample"
    Params = SampleParams
    max_inputs: ClassVar[int | None] = 1
    packages = ("polars",)
    description = "seeded fraction and/or first-N sample"

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: SampleParams = ctx.params  # type: ignore[assignment]
        tasks = self.plan_shards(ctx)
        if params.limit is not None:
            if params.fraction is None:
                counts = list(ctx.inputs[0].rows)
            else:
                counts = ctx.map(
                    _CountTask(params, ctx.seed), [t.payload["path"] for t in tasks], phase="count"
                )
            left = params.limit
            quotas = []
            for n in counts:
                quotas.append(min(n, left))
                left -= quotas[-1]
            tasks = [
                ShardTask(t.index, {**t.payload, "quota": q}, t.label)
                for t, q in zip(tasks, quotas, strict=True)
            ]
        return ctx.run_shards(tasks)

    def run_shard(self, params: SampleParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"])
        selected = _selected(frame.get_column("id"), params, seed)
        reason = pl.when(selected).then(pl.lit(None)).otherwise(pl.lit("sample_not_selected"))
        frame = frame.with_columns(pl.select(reason.alias("reason")).get_column("reason"))
        quota = task.payload.get("quota")
        if quota is not None:
            rank = selected.cast(pl.Int64).cum_sum()
            over = selected & (rank > quota)
            frame = frame.with_columns(
                pl.when(pl.Series(over))
                .then(pl.lit("sample_over_limit"))
                .otherwise(pl.col("reason"))
                .alias("reason")
            )
        kept = frame.filter(pl.col("reason").is_null()).drop("reason")
        dropped = frame.filter(pl.col("reason").is_not_null())
        return write_shard(out_dir, task.index, kept, rows_in=frame.height, dropped=dropped, started=started)


class _CountTask:
    """Picklable callable for the counting pass."""

    def __init__(self, params: SampleParams, seed: int) -> None:
        self.params, self.seed = params, seed

    def __call__(self, path: str) -> int:
        return _count_selected(path, self.params, self.seed)
