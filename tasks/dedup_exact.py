"""`dedup_exact`: exact dedup on normalised text over all input shards (global, not per shard).

Phases, all on the cluster: (1) one task per input shard writes the 128-bit xxh3 hashes of its normalised
texts to ``_work/hashes/``, split into row groups by hash partition; (2) one task per hash partition finds
the documents whose hash an earlier document (by input shard, then row) already has, and their distinct roots;
(3) the kept documents' ids are looked up and ``ctx.run_shards`` writes one output shard per input shard: kept rows unchanged,
dropped rows with reason ``exact_duplicate`` and ``duplicate_of`` (the kept id); kept rows get
``dup_cluster_size``, the copies each one stands for (see ``tasks._dedup``).

Every phase reuses its files when a killed run left them, and the result depends only on the input order,
never on the number of workers or partitions. Departure from datatrove's ``ExactDedup`` (sha1 of the raw
text): the text is normalised first (lowercase, numbers, punctuation, diacritics, whitespace; see
``data_pipes.dedup.normalise``) so reformatted copies match too; switch steps off with ``norm``. Texts that
normalise to nothing are kept.
"""

from __future__ import annotations

import functools
from typing import ClassVar

from pydantic import Field

from data_pipes.dedup.params import ExactDedupParams
from data_pipes.dedup.phases import exact_hash_phase, exact_partition_phase, roots_phase
from data_pipes.io.shards import ShardResult
from tasks._dedup import DedupKind, DedupParams, incoming_sizes
from tasks._timing import timed
from tasks.base import RunContext
from tasks.registry import register


class DedupExactParams(DedupParams, ExactDedupParams):
    """``ExactDedupParams`` (norm) plus the dedup kinds' own and the reduce's partition count."""

    partitions: int = Field(16, ge=1, le=4096, description="hash partitions reduced in parallel (phase 2)")


def _hash_task(params: DedupExactParams, work: str, item: tuple[str, int]) -> tuple[str, str | None]:
    in_path, shard = item
    hashes = exact_hash_phase(
        in_path,
        shard,
        f"{work}/hashes/part-{shard:05d}.parquet",
        ExactDedupParams(norm=params.norm),
        params.partitions,
        column=params.text_column,
    )
    return hashes, incoming_sizes(in_path, shard, work)


def _partition_task(hash_paths: list[str], work: str, part: int) -> tuple[str, str]:
    out = f"{work}/duplicates/part-{part:05d}.parquet"
    exact_partition_phase(hash_paths, part, out)
    return out, roots_phase(out, f"{work}/roots/part-{part:05d}.parquet")


@register
class DedupExact(DedupKind):
    name: ClassVar[str] = "dedup_exact"
    Params = DedupExactParams
    reason: ClassVar[str] = "exact_duplicate"
    cluster_word: ClassVar[str] = "texts with copies"
    description = "global exact dedup on normalised text; keeps the first copy by (input shard, row)"

    phases: ClassVar[tuple[str, ...]] = ("hash", "partitions", "assign", "write")

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: DedupExactParams = ctx.params  # type: ignore[assignment]
        tasks = self.plan_shards(ctx)
        work = self.work(ctx)

        def find():  # noqa: ANN202
            items = [(t.payload["path"], t.index) for t in tasks]
            with timed(ctx, "hash_s"):
                hashed = ctx.map(functools.partial(_hash_task, params, work), items, phase="hash")
            hash_paths = [h for h, _ in hashed]
            with timed(ctx, "partitions_s"):
                parts = ctx.map(
                    functools.partial(_partition_task, hash_paths, work),
                    list(range(params.partitions)),
                    phase="partitions",
                    unit="partitions",
                )
            return [d for d, _ in parts], [r for _, r in parts], {}, [w for _, w in hashed]

        return self.finish(ctx, tasks, find)
