"""Base class of kinds that map document shards one to one (filters, samplers, scorers).

The base owns the loop: one output shard per input shard (across all inputs, in input order), reading, the
accounting, and writing kept / dropped rows. A subclass writes one method, ``process``, that returns the kept rows
and the dropped rows with a ``reason`` column.
"""

from __future__ import annotations

import time
from typing import ClassVar

import polars as pl

from data_pipes.io.shards import ShardResult, write_shard
from tasks.base import DataType, Kind, KindParams, RunContext, ShardTask


class DocumentMapKind(Kind):
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.DOCUMENTS,)
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = None
    output_type: ClassVar[DataType] = DataType.DOCUMENTS
    columns: ClassVar[list[str] | None] = None  # columns to read; None reads all

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        tasks = []
        for inp in ctx.inputs:
            for path in inp.shards:
                tasks.append(
                    ShardTask(len(tasks), {"path": path, "input": inp.name}, label=f"{inp.name}:{path}")
                )
        return tasks

    def run_shard(self, params: KindParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"], columns=self.columns)
        kept, dropped = self.process(frame, params, seed, task)
        return write_shard(out_dir, task.index, kept, rows_in=frame.height, dropped=dropped, started=started)

    def process(
        self, frame: pl.DataFrame, params: KindParams, seed: int, task: ShardTask
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        raise TypeError(f"kind {self.name!r} does not implement process")


def split_by_mask(
    frame: pl.DataFrame, keep: pl.Series, reason: str | pl.Series
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Kept rows where ``keep`` is true; the rest dropped with ``reason`` (a constant or a per-row series)."""
    keep = keep.fill_null(False)
    kept = frame.filter(keep)
    if isinstance(reason, str):
        dropped = frame.filter(~keep).with_columns(pl.lit(reason).alias("reason"))
    else:
        dropped = frame.with_columns(reason.alias("reason")).filter(~keep)
    return kept, dropped


def hash_unit(ids: pl.Series, seed: int) -> pl.Series:
    """A deterministic number in [0, 1) per id: the same for a document wherever and however it is sharded."""
    return (ids.hash(seed=seed) % (1 << 53)).cast(pl.Float64) / float(1 << 53)
